"""The worker pool's place in the app: started by the lifespan, stopped before the pool closes,
off with FLOWCORE_WORKERS=0; and the `flowcore worker` command line."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.container import build_container
from app.factory import create_app
from infra.http_caller import HttpCaller
from infra.settings import Settings
from infra.worker import JobWorker
from tests.infra.local_service import Ledger, local_service

TENANT = "bank-a"


def _model(url: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs" targetNamespace="http://flowcore.test">
  <bpmn:process id="Ping" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Call"/>
    <bpmn:serviceTask id="Call">
      <bpmn:extensionElements><camunda:properties>
        <camunda:property name="Endpoint" value="{url}/ping"/>
      </camunda:properties></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Call" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


async def _send(client: httpx.AsyncClient, cmd: str, data: dict[str, object]) -> dict[str, object]:
    response = await client.post("/api/core/cmd", json={"cmd": cmd, "data": data}, headers={"x-tenant-id": TENANT})
    body = response.json()
    assert body["isSuccessful"], body
    result: dict[str, object] = body["data"]
    return result


async def test_the_lifespan_runs_the_workers_and_stops_them_first(db_dsn: str, tmp_path: Path) -> None:
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, workers=2, job_poll_ms=20, job_retention_hours=24)
    container = build_container(settings)
    app = create_app(settings, container=container, demo_tenant=None)
    with local_service(Ledger()) as url:
        async with app.router.lifespan_context(app):
            worker: JobWorker = container.resolve(JobWorker)
            assert worker.running
            assert worker.housekeeping is not None and worker.housekeeping.job_retention == timedelta(hours=24)
            assert isinstance(container.resolve(HttpCaller), HttpCaller)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://flowcore.test") as client:
                deployed = await _send(client, "CreateProcessDefinitionCommand", {"bpmnXml": _model(url)})
                started = await _send(client, "StartProcessInstanceCommand", {"id": deployed["id"]})
                guid = started["instanceGuid"]
                deadline = time.monotonic() + 15
                while True:
                    state = await _send(client, "GetProcessInstanceStateCommand", {"instanceGuid": guid})
                    if state["status"] == "completed" or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.02)
            assert state["status"] == "completed"
            assert state["state"]["variables"]["lastServiceResult"]["accepted"] is True  # type: ignore[index]
        assert not worker.running and worker.busy == 0


async def test_no_workers_when_the_pool_size_is_zero(db_dsn: str, tmp_path: Path) -> None:
    settings = Settings(database_url=db_dsn, data_dir=tmp_path, workers=0)
    container = build_container(settings)
    app = create_app(settings, container=container, demo_tenant=None)
    async with app.router.lifespan_context(app):
        with pytest.raises(Exception, match="JobWorker"):
            container.resolve(JobWorker)


def test_worker_command_line_refuses_a_pool_of_none(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--workers", "0"])
    assert exit_info.value.code == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
