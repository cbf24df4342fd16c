"""Stored documents to pydantic models; a malformed document is reported, never fatal."""

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from pydantic import ValidationError

from gatewayflow.domain.documents import Document
from gatewayflow.store.client import RawDoc
from gatewayflow.store.errors import MalformedDocument

log = logging.getLogger("gatewayflow.store")

D = TypeVar("D", bound=Document)
OnMalformed = Callable[[MalformedDocument], None]


def collection_of(model: type[Document]) -> str:
    """Collections are named exactly like their document classes (`ApiGateway`, ...)."""
    return model.__name__


def parse(model: type[D], raw: RawDoc) -> D:
    """The document as `model`, or MalformedDocument naming collection, gateway and _id."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise MalformedDocument.from_validation(collection_of(model), raw, exc) from None


def log_malformed(problem: MalformedDocument) -> None:
    log.warning("skipped: %s", problem)


def raise_malformed(problem: MalformedDocument) -> None:
    """For a step that must not act on part of a gateway: the whole step stops, naming
    the document, instead of skipping it (a skipped trigger would keep its CronJob)."""
    raise problem


def parse_all(
    model: type[D], raws: Iterable[RawDoc], on_malformed: OnMalformed = log_malformed
) -> list[D]:
    """Every document that validates; each one that does not goes to `on_malformed`."""
    parsed: list[D] = []
    for raw in raws:
        try:
            parsed.append(parse(model, raw))
        except MalformedDocument as problem:
            on_malformed(problem)
    return parsed
