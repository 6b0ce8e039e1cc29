"""SIGKILL in the middle of service calls, then a restart: every instance completes exactly once.

`flowcore serve` (with its in-process workers) and a separate `flowcore worker` run as
subprocesses on the test database. Thirty instances each call a slow local service; while calls
are in flight both process groups are killed with SIGKILL, then both are started again. The
service keeps a ledger per Idempotency-Key (tests/infra/local_service.py).

What must hold afterwards: every instance completed; each has exactly one completion of its
service task and one InstanceCompleted in its history (no step lost, none doubled); no job is
left pending or running; one job per instance; and at the service every key's effect was
applied once (calls may repeat, at least once, but the de-duplicated effects equal the instances).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from infra.database import connect
from tests.infra.local_service import Ledger, local_service

ROOT = Path(__file__).resolve().parents[2]
TENANT = "crash-test"
INSTANCES = 30
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs" targetNamespace="http://flowcore.test">\n'
)


def model(service_url: str) -> str:
    return HEAD + f"""
  <bpmn:process id="Charge" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Call"/>
    <bpmn:serviceTask id="Call" name="Charge card">
      <bpmn:extensionElements><camunda:properties>
        <camunda:property name="Endpoint" value="{service_url}/charge"/>
        <camunda:property name="TimeoutMs" value="3000"/>
        <camunda:property name="Retries" value="5"/>
        <camunda:property name="RetryBackoff" value="100"/>
        <camunda:property name="PayloadTemplate" value='{{"order": "${{order}}"}}'/>
        <camunda:property name="ResultVariable" value="charge"/>
      </camunda:properties></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Call" targetRef="Done"/>
    <bpmn:scriptTask id="Done" name="Mark done" scriptFormat="javascript">
      <bpmn:script>charged = true;</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="Done" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


def _environment(db_dsn: str, workers: int) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": db_dsn, "FLOWCORE_DEMO_TENANT": "", "FLOWCORE_LOG_LEVEL": "INFO",
           "FLOWCORE_WORKERS": str(workers), "FLOWCORE_JOB_POLL_MS": "50", "FLOWCORE_JOB_LEASE_MARGIN_MS": "1000"}
    env.pop("FLOWCORE_PORT", None)
    return env


class Processes:
    """The flowcore processes of one run, each in its own process group, logging to a file."""

    def __init__(self, db_dsn: str, logs: Path) -> None:
        self.db_dsn = db_dsn
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def _spawn(self, args: list[str], workers: int, name: str) -> Path:
        self.count += 1
        log = self.logs / f"{self.count:02d}-{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=_environment(self.db_dsn, workers),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.running.append(process)
        return log

    def serve(self, data_dir: Path) -> str:
        log = self._spawn(["serve", "--port", "0", "--data-dir", str(data_dir)], workers=2, name="serve")
        return self._wait_for(log, r"listening on (http://127\.0\.0\.1:\d+)")

    def worker(self, data_dir: Path) -> None:
        log = self._spawn(["worker", "--workers", "2", "--data-dir", str(data_dir)], workers=2, name="worker")
        self._wait_for(log, r"worker ready")

    def _wait_for(self, log: Path, pattern: str) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(pattern, log.read_text(errors="replace"))
            if found:
                return found.group(found.lastindex or 0)
            if self.running[-1].poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{log.name} did not get ready:\n{log.read_text(errors='replace')}")

    def kill_all(self) -> None:
        """SIGKILL every process group: the server, its workers, the worker process."""
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.running:
            process.wait(timeout=10)
        assert all(p.returncode == -signal.SIGKILL for p in self.running)
        self.running = []

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.running = []

    def logs_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.logs.glob("*.log")))


@contextmanager
def flowcore(db_dsn: str, logs: Path) -> Iterator[Processes]:
    processes = Processes(db_dsn, logs)
    try:
        yield processes
    finally:
        processes.stop_all()


async def command(http: httpx.AsyncClient, cmd: str, data: dict[str, Any]) -> Any:
    response = await http.post("/api/core/cmd", json={"cmd": cmd, "data": data}, headers={"x-tenant-id": TENANT})
    body = response.json()
    assert body["isSuccessful"], body
    return body["data"]


async def test_sigkill_mid_flight_then_restart_completes_every_instance_exactly_once(
    db_dsn: str, tmp_path: Path
) -> None:
    ledger = Ledger(delay=0.5)
    logs = tmp_path / "logs"
    logs.mkdir()
    with local_service(ledger) as service_url, flowcore(db_dsn, logs) as processes:
        url = processes.serve(tmp_path)
        processes.worker(tmp_path)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            deployed = await command(http, "CreateProcessDefinitionCommand", {"bpmnXml": model(service_url)})
            starts = [
                command(http, "StartProcessInstanceCommand", {"id": deployed["id"], "variables": {"order": n}})
                for n in range(INSTANCES)
            ]
            guids = [state["instanceGuid"] for state in await asyncio.gather(*starts)]
        assert len(set(guids)) == INSTANCES

        # Kill while calls are in flight: at least a few answered, more already sent.
        deadline = time.monotonic() + 30
        while ledger.total < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert ledger.total >= 8, processes.logs_text()
        processes.kill_all()
        calls_before_restart = ledger.total
        assert len(ledger.effects) < INSTANCES  # the kill really came mid-way

        url = processes.serve(tmp_path)
        processes.worker(tmp_path)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 40
            while True:
                listed = await command(
                    http, "GetProcessInstanceListQuery", {"status": "completed", "pageSize": 100}
                )
                if listed["totalRecords"] == INSTANCES or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert listed["totalRecords"] == INSTANCES, processes.logs_text()
            histories = await asyncio.gather(*(
                command(http, "GetProcessInstanceHistoryQuery", {"instanceGuid": guid, "pageSize": 100})
                for guid in guids
            ))
            states = await asyncio.gather(*(
                command(http, "GetProcessInstanceStateCommand", {"instanceGuid": guid}) for guid in guids
            ))

    # No step lost, none doubled.
    for history in histories:
        completions = [e for e in history["items"] if e["eventType"] == "TaskCompleted" and e["nodeId"] == "Call"]
        finished = [e for e in history["items"] if e["eventType"] == "InstanceCompleted"]
        assert (len(completions), len(finished)) == (1, 1), history["items"]
    for state in states:
        assert state["status"] == "completed" and state["state"]["variables"]["charged"] is True

    # No job stuck, no job duplicated.
    connection = await connect(db_dsn)
    try:
        jobs = await connection.fetch("SELECT instance_guid, status, attempts, idempotency_key FROM jobs")
    finally:
        await connection.close()
    assert sorted(j["instance_guid"] for j in jobs) == sorted(guids)
    assert {j["status"] for j in jobs} == {"done"}
    assert any(j["attempts"] > 1 for j in jobs)  # some calls were cut off by the kill and claimed again

    # At the service: calls at least once, effects exactly once per key (= per instance).
    keys = {j["idempotency_key"] for j in jobs}
    assert set(ledger.effects) == keys and len(keys) == INSTANCES
    assert {key.split(":")[0] for key in keys} == set(guids)
    assert all(ledger.calls[key] >= 1 for key in keys)
    assert sum(ledger.calls.values()) > INSTANCES  # the calls in flight at the kill were made again
    assert ledger.total > calls_before_restart
    assert "Traceback" not in processes.logs_text()
    for state in states:
        charge = state["state"]["variables"]["charge"]
        assert charge["key"] in keys and charge["echo"] == {"order": state["state"]["variables"]["order"]}
