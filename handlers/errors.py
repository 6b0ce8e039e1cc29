"""Errors handlers raise beyond the domain's own: lookups that find nothing, lost races."""

from __future__ import annotations

from domain.errors import DomainError


class NotFound(DomainError):
    code = "NOT_FOUND"


class DefinitionNotFound(NotFound):
    code = "DEFINITION_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("Process definition not found.")


class InstanceNotFound(NotFound):
    code = "INSTANCE_NOT_FOUND"

    def __init__(self, instance_guid: str) -> None:
        super().__init__(f"Process instance '{instance_guid}' not found.")


class CorrelatedInstanceNotFound(InstanceNotFound):
    def __init__(self, correlation_key: str) -> None:
        NotFound.__init__(self, f"No process instance with correlation key '{correlation_key}' found.")


class VersionConflict(DomainError):
    """Another command changed the instance first, every time we retried."""

    code = "VERSION_CONFLICT"


class DuplicateInstanceGuid(DomainError):
    code = "DUPLICATE_INSTANCE"


class BadCommandData(DomainError):
    """Well-typed but unusable input found by a handler (e.g. runtimeContext that is not a JSON object)."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, details={"path": path} if path else None)


class CommandNotAvailable(DomainError):
    code = "COMMAND_NOT_AVAILABLE"
