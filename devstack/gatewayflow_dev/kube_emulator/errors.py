"""API errors as the real API server reports them: `Status` objects with a reason and code.

Clients branch on `code` and `reason` (the Python client raises `ApiException` with the
status; kubectl prints `message`), so the messages follow the API server's wording.
"""

from typing import Any

from gatewayflow_dev.kube_emulator.kinds import Kind


class ApiError(Exception):
    """An error answered as a `Status` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: Kind, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return details


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.resource} "{name}" not found', _details(kind, name))


def already_exists(kind: Kind, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{kind.resource} "{name}" already exists', _details(kind, name)
    )


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.resource} "{name}": {why}',
        _details(kind, name),
    )


def forbidden(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(
        403, "Forbidden", f'{kind.resource} "{name}" is forbidden: {why}', _details(kind, name)
    )


def invalid(kind: Kind, name: str, field: str, why: str) -> ApiError:
    """422 Invalid; `details.kind` is the Kind here, as the API server reports it."""
    message = f"{field}: {why}"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind.kind,
        "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
    }
    if kind.group:
        details["group"] = kind.group
    return ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: {message}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )
