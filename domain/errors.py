"""Domain exceptions. Each carries a stable UPPER_SNAKE code; the edge maps codes to statuses."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationProblem:
    """One problem found in a BPMN document, located so a modeler user can find it."""

    __slots__ = ("element_id", "line", "message", "tag")

    def __init__(self, message: str, *, element_id: str | None = None, tag: str | None = None,
                 line: int | None = None) -> None:
        self.message = message
        self.element_id = element_id
        self.tag = tag
        self.line = line

    def as_dict(self) -> dict[str, Any]:
        return {"elementId": self.element_id, "tag": self.tag, "line": self.line, "message": self.message}

    def __repr__(self) -> str:
        return f"ValidationProblem({self.element_id!r}, {self.tag!r}, line={self.line}, {self.message!r})"


class InvalidDefinition(DomainError):
    """The document cannot be deployed: malformed XML, forbidden constructs, or model problems."""

    code = "INVALID_BPMN"

    def __init__(self, message: str, problems: list[ValidationProblem] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message, details={"problems": [p.as_dict() for p in self.problems]})


class StartNodeNotFound(DomainError):
    code = "START_NODE_NOT_FOUND"


class MultipleStartNodes(DomainError):
    code = "MULTIPLE_START_NODES"


class MandatoryParamsMissing(DomainError):
    code = "MANDATORY_PARAMS_MISSING"


class InvalidStateForCommand(DomainError):
    """The command is understood but not possible in the instance's current state."""

    code = "INVALID_STATE"


class TaskNotWaiting(InvalidStateForCommand):
    code = "TASK_NOT_WAITING"


class InvalidAction(InvalidStateForCommand):
    code = "INVALID_ACTION"



class ScriptError(DomainError):
    """A condition or script failed: syntax, runtime exception, time or memory limit."""

    code = "SCRIPT_ERROR"


class BpmnErrorThrown(DomainError):
    """`throw new BpmnError(code, message)` in a script, or a service's BPMN error code."""

    code = "BPMN_ERROR"

    def __init__(self, error_code: str, message: str = "") -> None:
        super().__init__(message or error_code, details={"errorCode": error_code})
        self.error_code = error_code
