"""The one table from an exception to the envelope's statusCode and the HTTP status.

Rows are tried in order and the first `isinstance` match wins, so a more specific class must
come before its base. Everything not in the table is an internal error: the client gets a
request id to quote and the traceback goes to the log, never into the response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.errors import (
    DomainError,
    InvalidDefinition,
    InvalidStateForCommand,
    MandatoryParamsMissing,
    MultipleStartNodes,
    StartNodeNotFound,
)
from handlers.errors import BadCommandData, DuplicateInstanceGuid, NotFound, VersionConflict
from handlers.ports import StorageUnavailable


class EdgeError(Exception):
    """A request refused at the edge, before any handler ran."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class MalformedRequest(EdgeError):
    """Not JSON, wrong Content-Type, unknown command, unknown or ill-typed field, bad header."""

    code = "BAD_REQUEST"


class BodyTooLarge(EdgeError):
    code = "PAYLOAD_TOO_LARGE"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body exceeds the limit of {limit} bytes.", details={"limit": limit})


class NotServing(EdgeError):
    """Starting up or shutting down: the request did nothing and may be retried."""

    code = "SERVICE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("The service is starting or shutting down; retry shortly.")


class IdempotencyKeyReused(EdgeError):
    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__("Idempotency-Key reused with a different request.")


class RouteNotFound(EdgeError):
    code = "ROUTE_NOT_FOUND"

    def __init__(self, path: str) -> None:
        super().__init__(f"No route {path}; commands go to POST /api/core/cmd.")


class MethodNotAllowed(EdgeError):
    code = "METHOD_NOT_ALLOWED"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Method {method} is not allowed on {path}.")


@dataclass(frozen=True, slots=True)
class Status:
    status_code: str
    http_status: int
    fallback_code: str


@dataclass(frozen=True, slots=True)
class Failure:
    """What the client sees for an exception."""

    status_code: str
    http_status: int
    error_code: str
    message: str
    details: dict[str, Any] | None


_BAD = Status("40", 400, "BAD_REQUEST")
_NOT_FOUND = Status("99", 404, "NOT_FOUND")
_CONFLICT = Status("99", 409, "CONFLICT")
_UNPROCESSABLE = Status("99", 422, "UNPROCESSABLE")
_UNAVAILABLE = Status("53", 503, "SERVICE_UNAVAILABLE")
INTERNAL = Status("50", 500, "INTERNAL_ERROR")

TABLE: tuple[tuple[type[BaseException], Status], ...] = (
    (BodyTooLarge, Status("40", 413, "PAYLOAD_TOO_LARGE")),
    (NotServing, _UNAVAILABLE),
    (IdempotencyKeyReused, _UNPROCESSABLE),
    (RouteNotFound, Status("40", 404, "ROUTE_NOT_FOUND")),
    (MethodNotAllowed, Status("40", 405, "METHOD_NOT_ALLOWED")),
    (MalformedRequest, _BAD),
    (InvalidDefinition, _BAD),
    (BadCommandData, _BAD),
    (NotFound, _NOT_FOUND),
    (InvalidStateForCommand, _CONFLICT),
    (VersionConflict, _CONFLICT),
    (DuplicateInstanceGuid, _CONFLICT),
    (StartNodeNotFound, _UNPROCESSABLE),
    (MultipleStartNodes, _UNPROCESSABLE),
    (MandatoryParamsMissing, _UNPROCESSABLE),
    (DomainError, _UNPROCESSABLE),
    (StorageUnavailable, Status("53", 503, "STORAGE_UNAVAILABLE")),
)

# Fixed texts: these exceptions may carry driver or host detail that must not reach clients.
_STORAGE_MESSAGE = "Storage is unavailable; retry shortly."


def status_for(exc: BaseException) -> Status:
    for cls, status in TABLE:
        if isinstance(exc, cls):
            return status
    return INTERNAL


def is_internal(exc: BaseException) -> bool:
    return status_for(exc) is INTERNAL


def failure_for(exc: BaseException, request_id: str) -> Failure:
    status = status_for(exc)
    code = getattr(exc, "code", None)
    error_code = code if isinstance(code, str) and code else status.fallback_code
    if status is INTERNAL:
        quote = f"Internal error; quote request id {request_id}."
        return Failure(INTERNAL.status_code, INTERNAL.http_status, INTERNAL.fallback_code, quote, None)
    if isinstance(exc, StorageUnavailable):
        return Failure(status.status_code, status.http_status, error_code, _STORAGE_MESSAGE, None)
    text = getattr(exc, "message", None)
    details = getattr(exc, "details", None)
    return Failure(
        status.status_code,
        status.http_status,
        error_code,
        text if isinstance(text, str) else str(exc),
        details if isinstance(details, dict) and details else None,
    )
