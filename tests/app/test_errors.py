"""The error table: every mapped exception, raised by a handler, reaches the client as specified."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from app.errors import TABLE
from commands.instances import GetProcessInstanceState
from domain.errors import (
    BpmnErrorThrown,
    DomainError,
    InvalidAction,
    InvalidDefinition,
    InvalidStateForCommand,
    MandatoryParamsMissing,
    MultipleStartNodes,
    ScriptError,
    StartNodeNotFound,
    TaskNotWaiting,
    ValidationProblem,
)
from handlers.bus import Reply, RequestContext
from handlers.deps import Deps
from handlers.errors import (
    BadCommandData,
    DefinitionNotFound,
    DuplicateInstanceGuid,
    InstanceNotFound,
    NotFound,
    VersionConflict,
)
from handlers.ports import StorageUnavailable
from tests.app.harness import JSON, build, envelope, running

PROBLEM = ValidationProblem("Unknown element type 'foo'.", element_id="Task_1", tag="foo", line=12)
PROBLEM_JSON = {"elementId": "Task_1", "tag": "foo", "line": 12, "message": "Unknown element type 'foo'."}
STATE = envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})

CASES: list[tuple[BaseException, str, int, str, str, Any]] = [
    (InvalidDefinition("Bad BPMN.", [PROBLEM]), "40", 400, "INVALID_BPMN", "Bad BPMN.",
     {"problems": [PROBLEM_JSON]}),
    (BadCommandData("runtimeContext is not a JSON object.", path="$.data.runtimeContext"), "40", 400,
     "BAD_REQUEST", "runtimeContext is not a JSON object.", {"path": "$.data.runtimeContext"}),
    (InstanceNotFound("g-1"), "99", 404, "INSTANCE_NOT_FOUND", "Process instance 'g-1' not found.", None),
    (DefinitionNotFound(), "99", 404, "DEFINITION_NOT_FOUND", "Process definition not found.", None),
    (NotFound("Nothing here."), "99", 404, "NOT_FOUND", "Nothing here.", None),
    (InvalidStateForCommand("Instance is completed."), "99", 409, "INVALID_STATE",
     "Instance is completed.", None),
    (TaskNotWaiting("Task is not waiting."), "99", 409, "TASK_NOT_WAITING", "Task is not waiting.", None),
    (InvalidAction("Action 'x' is not offered.", details={"allowed": ["approve"]}), "99", 409,
     "INVALID_ACTION", "Action 'x' is not offered.", {"allowed": ["approve"]}),
    (VersionConflict("Instance changed concurrently."), "99", 409, "VERSION_CONFLICT",
     "Instance changed concurrently.", None),
    (DuplicateInstanceGuid("Instance 'g' exists."), "99", 409, "DUPLICATE_INSTANCE",
     "Instance 'g' exists.", None),
    (StartNodeNotFound("Start node for process definition not found."), "99", 422, "START_NODE_NOT_FOUND",
     "Start node for process definition not found.", None),
    (MultipleStartNodes("Multiple start nodes found, but start condition not specified."), "99", 422,
     "MULTIPLE_START_NODES", "Multiple start nodes found, but start condition not specified.", None),
    (MandatoryParamsMissing("Some mandatory params are missing.", details={"missingParams": ["amount"]}),
     "99", 422, "MANDATORY_PARAMS_MISSING", "Some mandatory params are missing.",
     {"missingParams": ["amount"]}),
    (ScriptError("x is not defined"), "99", 422, "SCRIPT_ERROR", "x is not defined", None),
    (BpmnErrorThrown("E42", "Declined"), "99", 422, "BPMN_ERROR", "Declined", {"errorCode": "E42"}),
    (DomainError("Generic refusal."), "99", 422, "DOMAIN_ERROR", "Generic refusal.", None),
    (StorageUnavailable("database unavailable: OSError: host db.internal:5432 password=pw"), "53", 503,
     "STORAGE_UNAVAILABLE", "Storage is unavailable; retry shortly.", None),
]


@pytest.mark.parametrize(
    ("exc", "status_code", "http", "error_code", "message", "data"), CASES,
    ids=[type(c[0]).__name__ for c in CASES],
)
async def test_mapped_exceptions(
    exc: BaseException, status_code: str, http: int, error_code: str, message: str, data: Any
) -> None:
    async def raising(cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
        raise exc

    async with running(build({GetProcessInstanceState: raising}).app) as client:
        response = await client.post("/api/core/cmd", json=STATE, headers=JSON)
    assert response.status_code == http
    assert response.json() == {"isSuccessful": False, "message": message, "statusCode": status_code,
                               "data": data, "errorCode": error_code,
                               "requestId": response.headers["x-request-id"]}
    assert "db.internal" not in response.text


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("k"), ValueError("v"), AssertionError()])
async def test_everything_else_is_internal(exc: BaseException) -> None:
    async def raising(cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
        raise exc

    async with running(build({GetProcessInstanceState: raising}).app) as client:
        response = await client.post("/api/core/cmd", json=STATE, headers=JSON)
    assert response.status_code == 500
    assert response.json()["statusCode"] == "50"
    assert response.json()["errorCode"] == "INTERNAL_ERROR"


def test_no_row_is_shadowed_by_an_earlier_more_general_row() -> None:
    for (i, (earlier, _)), (j, (later, _)) in itertools.combinations(enumerate(TABLE), 2):
        assert not issubclass(later, earlier), f"row {j} ({later.__name__}) is unreachable behind row {i} " \
                                               f"({earlier.__name__})"
