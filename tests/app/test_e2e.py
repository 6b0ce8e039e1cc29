"""End to end: flowcore behind a real uvicorn socket on 127.0.0.1, on a real PostgreSQL database.

The server runs in a thread with its own event loop (as `flowcore serve` runs it: uvloop,
httptools, lifespan on); the test talks to it over TCP with httpx.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parents[2]
TENANT_A = "bank-a"
TENANT_B = "bank-b"


def _serve_in_thread(settings: Settings) -> Iterator[str]:
    server = build_server(settings)
    thread = threading.Thread(target=server.run, name="flowcore-e2e", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server stopped during startup; see the captured log")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("the server did not start within 60 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not shut down"


@pytest.fixture
def base_url(db_dsn: str, tmp_path: Path) -> Iterator[str]:
    settings = Settings(database_url=db_dsn, host="127.0.0.1", port=0, data_dir=tmp_path)
    yield from _serve_in_thread(settings)


@pytest_asyncio.fixture(loop_scope="session")
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        yield http


async def send(
    client: httpx.AsyncClient, tenant: str, cmd: str, data: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/core/cmd", json={"cmd": cmd, "data": data}, headers={"x-tenant-id": tenant, **headers}
    )


def ok(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, response.text
    assert (body["isSuccessful"], body["statusCode"]) == (True, "00"), body
    data: dict[str, Any] = body["data"]
    return data


async def test_loan_approval_walk(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 200

    # The first start deployed the example for the demo tenant.
    demo = ok(await send(client, "demo", "GetProcessDefinitionListQuery", {}))
    assert [item["processKey"] for item in demo["items"]] == ["LoanApproval_v1"]

    deployed = ok(
        await send(client, TENANT_A, "CreateProcessDefinitionCommand", {"bpmnXml": loan_approval_xml()})
    )
    assert (deployed["processKey"], deployed["version"]) == ("LoanApproval_v1", 1)
    assert deployed["processes"] == ["LoanApproval_v1"]

    small = ok(
        await send(
            client,
            TENANT_A,
            "StartProcessInstanceCommand",
            {"processKey": "LoanApproval_v1", "variables": {"applicantName": "Ann", "amount": 1000}},
        )
    )
    assert small["status"] == "completed"
    assert small["state"]["variables"]["riskScore"] == 30

    large = ok(
        await send(
            client,
            TENANT_A,
            "StartProcessInstanceCommand",
            {
                "processKey": "LoanApproval_v1",
                "businessKey": "LOAN-1",
                "variables": {"applicantName": "Bob", "amount": 90000},
            },
        )
    )
    guid = large["instanceGuid"]
    assert large["status"] == "waiting"
    assert large["currentTask"]["taskName"] == "Manager Approval"
    assert {a["action"] for a in large["nextActions"] if a.get("userAction")} == {"approve", "reject"}

    state = ok(await send(client, TENANT_A, "GetProcessInstanceStateCommand", {"instanceGuid": guid}))
    assert (state["status"], state["currentActivityId"]) == ("waiting", "Task_ManagerApproval")
    assert state["state"]["variables"]["riskScore"] == 80

    hidden = await send(client, TENANT_B, "GetProcessInstanceStateCommand", {"instanceGuid": guid})
    assert hidden.status_code == 404
    assert hidden.json()["statusCode"] == "99"
    assert hidden.json()["message"] == f"Process instance '{guid}' not found."

    signal = {"instanceGuid": guid, "action": "approve", "currentUser": "manager"}
    approved = await send(
        client, TENANT_A, "SignalProcessInstanceCommand", signal, **{"idempotency-key": "sig-1"}
    )
    done = ok(approved)
    assert done["status"] == "completed"
    assert done["state"]["variables"]["notification"]["to"] == "Bob"
    replay = await send(
        client, TENANT_A, "SignalProcessInstanceCommand", signal, **{"idempotency-key": "sig-1"}
    )
    assert replay.content == approved.content

    final = ok(await send(client, TENANT_A, "GetProcessInstanceStateCommand", {"instanceGuid": guid}))
    assert final["status"] == "completed"


async def test_refusals_over_the_socket(client: httpx.AsyncClient) -> None:
    ok(await send(client, TENANT_A, "CreateProcessDefinitionCommand", {"bpmnXml": loan_approval_xml()}))
    missing = await send(
        client,
        TENANT_A,
        "StartProcessInstanceCommand",
        {"processKey": "LoanApproval_v1", "variables": {"applicantName": "Ann"}},
    )
    assert missing.status_code == 422
    assert (missing.json()["statusCode"], missing.json()["message"]) == (
        "99",
        "Some mandatory params are missing.",
    )

    no_tenant = await client.post("/api/core/cmd", json={"cmd": "GetProcessDefinitionListQuery", "data": {}})
    assert (no_tenant.status_code, no_tenant.json()["statusCode"]) == (400, "40")

    too_big = await client.post(
        "/api/core/cmd",
        content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={"x-tenant-id": TENANT_A, "content-type": "application/json"},
    )
    assert (too_big.status_code, too_big.json()["statusCode"]) == (413, "40")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"cmd": "GetProcessDefinitionListQuery", "data": {"searchText": "'
        for _ in range(300):
            yield b"x" * 4096
        yield b'"}}'

    streamed = await client.post(
        "/api/core/cmd",
        content=chunks(),
        headers={"x-tenant-id": TENANT_A, "content-type": "application/json"},
    )
    assert (streamed.status_code, streamed.json()["statusCode"]) == (413, "40")
    after = await send(client, TENANT_A, "GetProcessDefinitionListQuery", {})
    assert ok(after)["totalRecords"] == 1  # the server stays usable after refusing

    bad_bpmn = await send(client, TENANT_A, "CreateProcessDefinitionCommand", {"bpmnXml": "<not-bpmn/>"})
    assert (bad_bpmn.status_code, bad_bpmn.json()["statusCode"]) == (400, "40")
    assert bad_bpmn.json()["errorCode"] == "INVALID_BPMN"


async def test_flowcore_serve_starts_serves_and_stops_on_sigterm(db_dsn: str, tmp_path: Path) -> None:
    """The real command line: progress lines on stderr, requests served, a clean stop on SIGTERM."""
    env = {**os.environ, "DATABASE_URL": db_dsn, "FLOWCORE_DEMO_TENANT": "", "FLOWCORE_LOG_LEVEL": "INFO"}
    env.pop("FLOWCORE_PORT", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url is not None, "".join(lines)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("/health")).json() == {"status": "ok"}
            listed = await http.post(
                "/api/core/cmd",
                json={"cmd": "GetProcessDefinitionListQuery", "data": {}},
                headers={"x-tenant-id": "demo", "x-request-id": "cli-check-1"},
            )
        assert ok(listed)["totalRecords"] == 0  # FLOWCORE_DEMO_TENANT="" deploys nothing
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
        lines.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = "".join(lines)
    assert process.returncode in (0, -signal.SIGTERM)
    assert "migrations applied" in log
    assert "shutting down" in log
    assert re.search(
        r"POST /api/core/cmd cmd=GetProcessDefinitionListQuery tenant=demo status=200 .*rid=cli-check-1", log
    )
    assert "Traceback" not in log
