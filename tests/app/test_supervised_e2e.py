"""Supervised mode end to end: flowcore behind a real uvicorn socket on real PostgreSQL.

The wire shapes of StepForward / StepBackward / SetExecutionMode, their refusals as "99", and
step commands racing over HTTP (each success is exactly one step in the history).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.cli import build_server
from app.demo import loan_approval_xml
from infra.settings import Settings

TENANT = "bank-a"


@pytest.fixture
def base_url(db_dsn: str, tmp_path: Path) -> Iterator[str]:
    server = build_server(Settings(database_url=db_dsn, host="127.0.0.1", port=0, data_dir=tmp_path))
    thread = threading.Thread(target=server.run, name="flowcore-supervised-e2e", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server stopped during startup"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest_asyncio.fixture(loop_scope="session")
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield http


async def send(client: httpx.AsyncClient, cmd: str, data: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/core/cmd", json={"cmd": cmd, "data": data}, headers={"x-tenant-id": TENANT})


def ok(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and body["statusCode"] == "00", body
    data: dict[str, Any] = body["data"]
    return data


def refused(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert (body["isSuccessful"], body["statusCode"]) == (False, "99"), body
    assert response.status_code in (404, 409, 422)
    return body


async def _start(client: httpx.AsyncClient) -> str:
    started = ok(await send(client, "StartProcessInstanceCommand", {
        "processKey": "LoanApproval_v1", "executionMode": "Supervised",
        "variables": {"applicantName": "Ada", "amount": 10000}}))
    guid: str = started["instanceGuid"]
    return guid


async def test_supervised_walk_over_the_wire(client: httpx.AsyncClient) -> None:
    ok(await send(client, "CreateProcessDefinitionCommand", {"bpmnXml": loan_approval_xml()}))
    guid = await _start(client)
    state = ok(await send(client, "GetProcessInstanceStateCommand", {"instanceGuid": guid}))
    assert state["executionMode"] == "Supervised" and state["status"] == "waiting"
    task = state["currentTask"]
    assert (task["taskId"], task["position"], task["totalTasks"]) == ("Task_CalculateRisk", 1, 3)
    assert state["progress"] == {"current": 1, "total": 3, "percentage": 33.33}
    assert [a["command"] for a in state["nextActions"]] == [
        "StepForwardCommand", "StepBackwardCommand", "CancelProcessInstanceCommand"]

    first = ok(await send(client, "StepForwardCommand", {"instanceGuid": guid}))
    assert set(first["previousTask"]) == {"taskId", "taskName", "taskType", "executionTime", "success"}
    second = ok(await send(client, "StepForwardCommand", {"instanceGuid": guid}))
    assert second["currentTask"]["taskId"] == "Task_NotifyApplicant"

    back = ok(await send(client, "StepBackwardCommand", {"instanceGuid": guid}))
    assert back["movedFrom"] == {"taskId": "Task_NotifyApplicant", "taskName": "Notify Applicant"}
    assert back["state"]["variables"] == first["state"]["variables"]
    execution = back["currentTask"]["previousExecution"]
    assert execution["success"] is True and execution["executedAt"].endswith("Z")
    assert back["sideEffectsNotUndone"] == []
    ok(await send(client, "StepBackwardCommand", {"instanceGuid": guid}))

    body = refused(await send(client, "StepBackwardCommand", {"instanceGuid": guid}))
    assert body["message"] == "The instance is at its first task; there is no step to go back to."
    body = refused(await send(client, "StepForwardCommand", {"instanceGuid": guid, "tokenId": 999}))
    assert body["message"] == "Token 999 is not paused before a task."

    done = ok(await send(client, "SetExecutionModeCommand", {"instanceGuid": guid, "executionMode": "Unsupervised"}))
    assert (done["status"], done["executionMode"]) == ("completed", "Unsupervised")
    body = refused(await send(client, "StepForwardCommand", {"instanceGuid": guid}))
    assert body["message"] == f"Instance '{guid}' is completed; it cannot step."

    malformed = (await send(client, "SetExecutionModeCommand", {"instanceGuid": guid, "executionMode": "Fast"})).json()
    assert malformed["statusCode"] == "40"


async def test_racing_step_forwards_over_http_take_one_step_each_success(client: httpx.AsyncClient) -> None:
    ok(await send(client, "CreateProcessDefinitionCommand", {"bpmnXml": loan_approval_xml()}))
    guid = await _start(client)
    responses = await asyncio.gather(*[send(client, "StepForwardCommand", {"instanceGuid": guid}) for _ in range(3)])
    bodies = [r.json() for r in responses]
    successes = [b for b in bodies if b["statusCode"] == "00"]
    assert successes and all(b["statusCode"] in ("00", "99") for b in bodies)
    history = ok(await send(client, "GetProcessInstanceHistoryQuery", {"instanceGuid": guid, "pageSize": 100}))
    steps = [e for e in history["items"] if e["eventType"] == "StepForward"]
    assert len(steps) == len(successes)
    state = ok(await send(client, "GetProcessInstanceStateCommand", {"instanceGuid": guid}))
    assert state["progress"]["current"] == min(len(successes) + 1, 3)
