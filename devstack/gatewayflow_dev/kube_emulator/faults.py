"""Fault injection: seeded, rule-based errors, latency and dropped connections.

Configuration (the `--faults` file, or the body of `PUT /_admin/faults`):

    {"seed": 7,
     "rules": [{"verb": "delete", "kind": "Deployment", "region": "local",
                "rate": 0.5, "status": 429, "retryAfter": 2, "latency": 0.2,
                "drop": false, "count": 3}]}

Every field of a rule is optional. `verb` is the API verb of the request (get, list,
watch, create, update, patch, delete, deletecollection); `kind` matches the Kind or its
plural, case-insensitively; `region` limits the rule to one cluster. Rules are tried in
order; the first whose filters match and whose draw (`rate`, default 1) succeeds fires:
it waits `latency` seconds, then either drops the connection (`drop`), answers `status`
as a `Status` (with a `Retry-After` header of `retryAfter` seconds if given; a 429 always
has one, default 1), or lets the request through (latency only). `count` caps how often
a rule fires. The draws come from one `random.Random(seed)`, so the same sequence of
requests meets the same faults.
Only resource requests meet faults; discovery, OpenAPI, health and admin calls never do.
"""

import random
import threading
from dataclasses import dataclass
from http.client import responses
from typing import Any

from gatewayflow_dev.kube_emulator.errors import ApiError
from gatewayflow_dev.kube_emulator.kinds import KINDS, VERBS, Kind

_REASONS = {
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_RULE_FIELDS = {
    "verb",
    "kind",
    "region",
    "rate",
    "status",
    "retryAfter",
    "latency",
    "drop",
    "count",
}


@dataclass
class FaultRule:
    verb: str | None = None
    kind: str | None = None
    region: str | None = None
    rate: float = 1.0
    status: int | None = None
    retry_after: int | None = None
    latency: float = 0.0
    drop: bool = False
    count: int | None = None
    injected: int = 0

    def matches(self, region: str, verb: str, kind: Kind) -> bool:
        return (
            (self.verb is None or self.verb == verb)
            and (self.kind is None or self.kind.lower() in (kind.kind.lower(), kind.plural))
            and (self.region is None or self.region == region)
            and (self.count is None or self.injected < self.count)
        )

    def error(self) -> ApiError:
        """The `Status` answered when the rule has a status code."""
        assert self.status is not None
        headers, details = {}, None
        seconds = 1 if self.retry_after is None and self.status == 429 else self.retry_after
        if seconds is not None:
            headers["Retry-After"] = str(seconds)
            details = {"retryAfterSeconds": seconds}
        message = f"injected fault: {responses.get(self.status, 'error')}"
        return ApiError(
            self.status, _REASONS.get(self.status, "InternalError"), message, details, headers
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rate": self.rate, "injected": self.injected}
        for key, value in (
            ("verb", self.verb),
            ("kind", self.kind),
            ("region", self.region),
            ("status", self.status),
            ("retryAfter", self.retry_after),
            ("count", self.count),
        ):
            if value is not None:
                out[key] = value
        if self.latency:
            out["latency"] = self.latency
        if self.drop:
            out["drop"] = True
        return out


def parse_rule(raw: Any) -> FaultRule:
    """A rule from its JSON form; ValueError says what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("a fault rule must be an object")
    unknown = set(raw) - _RULE_FIELDS
    if unknown:
        raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
    rule = FaultRule(
        verb=raw.get("verb"),
        kind=raw.get("kind"),
        region=raw.get("region"),
        rate=float(raw.get("rate", 1.0)),
        status=raw.get("status"),
        retry_after=raw.get("retryAfter"),
        latency=float(raw.get("latency", 0.0)),
        drop=bool(raw.get("drop", False)),
        count=raw.get("count"),
    )
    if rule.verb is not None and rule.verb not in VERBS:
        raise ValueError(f"unknown verb {rule.verb!r}; one of {VERBS}")
    if rule.kind is not None and not any(
        rule.kind.lower() in (k.kind.lower(), k.plural) for k in KINDS
    ):
        raise ValueError(f"unknown kind {rule.kind!r}")
    if not 0.0 <= rule.rate <= 1.0:
        raise ValueError("rate must be between 0 and 1")
    if rule.status is not None and not (isinstance(rule.status, int) and 400 <= rule.status <= 599):
        raise ValueError("status must be an HTTP error code (400..599)")
    if rule.latency < 0:
        raise ValueError("latency must not be negative")
    if rule.retry_after is not None and (
        not isinstance(rule.retry_after, int) or rule.retry_after < 0
    ):
        raise ValueError("retryAfter must be a non-negative integer of seconds")
    if rule.count is not None and (not isinstance(rule.count, int) or rule.count < 0):
        raise ValueError("count must be a non-negative integer")
    return rule


class FaultInjector:
    """The fault rules of the whole emulator, shared by all regions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seed = 0
        self._rules: list[FaultRule] = []
        self._random = random.Random(0)

    def configure(self, config: Any) -> None:
        if not isinstance(config, dict) or set(config) - {"seed", "rules"}:
            raise ValueError('fault configuration is {"seed": int, "rules": [rule, ...]}')
        seed = config.get("seed", 0)
        if not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        rules = [parse_rule(raw) for raw in config.get("rules", [])]
        with self._lock:
            self._seed, self._rules, self._random = seed, rules, random.Random(seed)

    def clear(self) -> None:
        self.configure({})

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"seed": self._seed, "rules": [rule.describe() for rule in self._rules]}

    def draw(self, region: str, verb: str, kind: Kind) -> FaultRule | None:
        """The rule that fires for this request, if any (and count it)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(region, verb, kind) and self._random.random() < rule.rate:
                    rule.injected += 1
                    return rule
        return None
