"""The worker pool end to end: real PostgreSQL, real HTTP over 127.0.0.1 sockets, the real engine.

The local service (tests/infra/local_service.py) fails its first N calls, takes its time when
asked, and keeps a ledger of calls and effects per Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from html import escape
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from commands.instances import (
    CancelProcessInstance,
    GetProcessInstanceHistory,
    RetryFailedTask,
)
from domain import engine as domain_engine
from domain.service_outcome import Succeeded
from handlers.bus import Bus, RequestContext
from handlers.deps import Deps
from handlers.errors import VersionConflict
from handlers.jobs import Settled, record_call_outcome
from handlers.ports import StorageUnavailable, UnitOfWork, UnitOfWorkFactory
from handlers.table import HANDLERS
from infra.clock import SystemClock
from infra.database import create_pool
from infra.housekeeping import Housekeeping
from infra.http_caller import HttpCaller, new_client
from infra.ids import UuidIds
from infra.job_store import PostgresJobStore
from infra.unit_of_work import PostgresUnitOfWorkFactory
from infra.worker import JobWorker, WorkerConfig, claimed
from tests.bus_driver import BusDriver
from tests.infra.local_service import Ledger, local_service

CTX = RequestContext(tenant_id="bank-a", request_id="r-worker", actor="tester")
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs" targetNamespace="http://flowcore.test">\n'
)


def _props(values: dict[str, str]) -> str:
    inner = "".join(f'<camunda:property name="{k}" value="{escape(v)}"/>' for k, v in values.items())
    return f"<bpmn:extensionElements><camunda:properties>{inner}</camunda:properties></bpmn:extensionElements>"


def one_call(url: str, *, retries: int = 3, backoff_ms: int = 20, timeout_ms: int = 5000) -> str:
    score = _props({
        "Endpoint": f"{url}/score", "Retries": str(retries), "RetryBackoff": str(backoff_ms),
        "TimeoutMs": str(timeout_ms), "PayloadTemplate": '{"customer": "${customerId}"}', "ResultVariable": "score",
    })
    return HEAD + f"""
  <bpmn:process id="Score" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Call"/>
    <bpmn:serviceTask id="Call" name="Call bureau">{score}</bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Call" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


def two_parallel_calls(url: str) -> str:
    def task(ident: str) -> str:
        values = {"Endpoint": f"{url}/{ident}", "RetryBackoff": "20", "ResultVariable": ident}
        return f'<bpmn:serviceTask id="{ident}">{_props(values)}</bpmn:serviceTask>'

    return HEAD + f"""
  <bpmn:process id="Both" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Fork"/>
    <bpmn:parallelGateway id="Fork"/>
    <bpmn:sequenceFlow id="f2" sourceRef="Fork" targetRef="a"/>
    <bpmn:sequenceFlow id="f3" sourceRef="Fork" targetRef="b"/>
    {task("a")}{task("b")}
    <bpmn:sequenceFlow id="f4" sourceRef="a" targetRef="Join"/>
    <bpmn:sequenceFlow id="f5" sourceRef="b" targetRef="Join"/>
    <bpmn:parallelGateway id="Join"/>
    <bpmn:sequenceFlow id="f6" sourceRef="Join" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


def polling_loop(url: str) -> str:
    """Call the service, count, and go round again until three calls were made."""
    call = _props({"Endpoint": f"{url}/poll", "RetryBackoff": "20", "ResultVariable": "last"})
    return HEAD + f"""
  <bpmn:process id="Poll" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Call"/>
    <bpmn:serviceTask id="Call">{call}</bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="Call" targetRef="Count"/>
    <bpmn:scriptTask id="Count" scriptFormat="javascript">
      <bpmn:script>rounds = (typeof rounds === "number" ? rounds : 0) + 1;</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="Count" targetRef="Again"/>
    <bpmn:exclusiveGateway id="Again" default="f5"/>
    <bpmn:sequenceFlow id="f4" sourceRef="Again" targetRef="Call">
      <bpmn:conditionExpression>${{rounds &lt; 3}}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f5" sourceRef="Again" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


def zero_timer() -> str:
    return HEAD + """
  <bpmn:process id="Tick" isExecutable="true">
    <bpmn:startEvent id="Start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="Start" targetRef="Pause"/>
    <bpmn:intermediateCatchEvent id="Pause">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
          xsi:type="bpmn:tFormalExpression">PT0S</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="Pause" targetRef="End"/>
    <bpmn:endEvent id="End"/>
  </bpmn:process>
</bpmn:definitions>"""


class AdjustableClock:
    """The system clock, plus an offset a test can move forward (to let leases run out)."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self._system = SystemClock()

    def now(self) -> datetime:
        return self._system.now() + self.offset


class Engine(BusDriver):
    def __init__(self, pool: asyncpg.Pool, caller: HttpCaller) -> None:
        self.pool = pool
        self.caller = caller
        self.clock = AdjustableClock()
        self.deps = Deps(uow=PostgresUnitOfWorkFactory(pool), clock=self.clock, ids=UuidIds())
        self.bus = Bus(HANDLERS, self.deps)
        self.ctx = CTX
        self.store = PostgresJobStore(pool)

    def worker(
        self,
        worker_id: str | None = None,
        *,
        deps: Deps | None = None,
        housekeeping: Housekeeping | None = None,
        **config: Any,
    ) -> JobWorker:
        settings = {"size": 4, "poll_interval": 0.02, "lease_margin": 1.0, **config}
        return JobWorker(
            deps or self.deps, self.store, self.caller, WorkerConfig(**settings), worker_id=worker_id,
            jitter=lambda: 1.0, housekeeping=housekeeping,
        )


    async def events(self, guid: str) -> list[dict[str, Any]]:
        data = await self.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
        return list(reversed(data["items"]))

    async def jobs(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch("SELECT * FROM jobs ORDER BY id"))

    async def until_job(self, *statuses: str, timeout: float = 15) -> asyncpg.Record:
        deadline = time.monotonic() + timeout
        while True:
            [job] = await self.jobs()
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"the job stayed {job['status']} (attempts {job['attempts']})")
            await asyncio.sleep(0.02)

    async def until_status(self, guid: str, *statuses: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state(guid)
            if state["status"] in statuses:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"instance stayed {state['status']}: {state.get('error')}")
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(db_dsn: str) -> AsyncIterator[Engine]:
    pool = await create_pool(db_dsn, max_size=12)
    client = new_client()
    try:
        yield Engine(pool, HttpCaller(client))
    finally:
        await client.aclose()
        await pool.close()


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def service_url(ledger: Ledger) -> Iterator[str]:
    with local_service(ledger) as url:
        yield url


async def running(worker: JobWorker, body: Callable[[], Awaitable[Any]]) -> Any:
    worker.start()
    try:
        return await body()
    finally:
        await worker.stop()


async def test_a_service_that_fails_its_first_calls_is_retried_until_it_answers(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    ledger.fail_first = 2
    guid = await engine.start(one_call(service_url), {"customerId": 42})
    state = await running(engine.worker(), lambda: engine.until_status(guid, "completed", "error"))
    assert state["status"] == "completed"
    score = state["state"]["variables"]["score"]
    key = score["key"]
    assert key.startswith(f"{guid}:") and score["echo"] == {"customer": 42}
    assert ledger.calls == {key: 3}  # two 503s, then the answer: one key throughout
    assert ledger.effects == {key: {"customer": 42}}
    types = [e["eventType"] for e in await engine.events(guid)]
    assert types.count("ServiceCallRetryScheduled") == 2 and types.count("TaskCompleted") == 1
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"], job["idempotency_key"]) == ("done", 3, key)


async def test_retries_spent_over_the_socket_leave_the_instance_in_error(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    ledger.fail_first = 100
    guid = await engine.start(one_call(service_url, retries=1), {"customerId": 1})
    state = await running(engine.worker(), lambda: engine.until_status(guid, "error"))
    assert state["error"]["taskId"] == "Call"
    assert state["error"]["errorMessage"] == (
        f"Service task 'Call' (Call bureau) failed: HTTP 503 from POST {service_url}/score (gave up after 2 attempts)"
    )
    assert '"call 2 fails on purpose"' in state["error"]["errorDetails"]
    assert ledger.total == 2 and ledger.effects == {}
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"]) == ("failed", 2)


async def test_a_lost_lease_counts_as_an_attempt_and_the_late_worker_changes_nothing(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    guid = await engine.start(one_call(service_url, timeout_ms=1000), {"customerId": 5})
    dead = engine.worker(worker_id="dead-worker")
    [lost] = await engine.store.claim_due(
        worker_id=dead.worker_id, limit=1, lease_margin_seconds=1.0, now=engine.clock.now()
    )  # claimed, then the worker "dies" before calling
    engine.clock.offset = timedelta(seconds=3)  # its lease (1 s + 1 s margin) has run out
    settled = await engine.worker(worker_id="alive").run_once()
    assert settled == [Settled.DONE]
    state = await engine.state(guid)
    assert state["status"] == "completed"
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"], job["locked_by"]) == ("done", 2, "alive")
    # the dead worker wakes up with a result: refused, nothing changes
    before = await engine.pool.fetchval("SELECT row_version FROM process_instances")
    assert await record_call_outcome(engine.deps, claimed(lost, dead.worker_id), Succeeded(result={})) is Settled.LOST
    assert await engine.pool.fetchval("SELECT row_version FROM process_instances") == before
    assert ledger.total == 1


async def test_stopping_hands_a_running_call_back_and_another_worker_finishes_it(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    ledger.delay = 1.0
    guid = await engine.start(one_call(service_url), {"customerId": 9})
    first = engine.worker(stop_grace=0.05)
    first.start()
    deadline = time.monotonic() + 10
    while ledger.total == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await first.stop()
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"], job["locked_by"]) == ("pending", 0, None)
    ledger.delay = 0
    state = await running(engine.worker(), lambda: engine.until_status(guid, "completed"))
    key = state["state"]["variables"]["score"]["key"]
    assert ledger.calls[key] == 2 and list(ledger.effects) == [key]  # called twice, applied once
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"]) == ("done", 1)


async def test_a_call_finishing_after_the_instance_was_cancelled_is_cancelled(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    ledger.delay = 0.5
    guid = await engine.start(one_call(service_url), {"customerId": 9})
    worker = engine.worker()
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while ledger.total == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert ledger.total == 1, "the call never reached the service"  # cancel lands mid-call, not before
        await engine.send(CancelProcessInstance(instance_guid=guid, reason="withdrawn"))
        while worker.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await worker.stop()
    assert (await engine.state(guid))["status"] == "cancelled"
    [job] = await engine.jobs()
    assert job["status"] == "cancelled"


async def test_parallel_calls_of_one_instance_both_land(engine: Engine, ledger: Ledger, service_url: str) -> None:
    ledger.delay = 0.1
    guid = await engine.start(two_parallel_calls(service_url))
    state = await running(engine.worker(), lambda: engine.until_status(guid, "completed", "error"))
    assert state["status"] == "completed"
    variables = state["state"]["variables"]
    assert variables["a"]["accepted"] and variables["b"]["accepted"]
    assert [j["status"] for j in await engine.jobs()] == ["done", "done"]


async def test_a_due_timer_fires_through_the_worker(engine: Engine) -> None:
    guid = await engine.start(zero_timer())
    state = await running(engine.worker(), lambda: engine.until_status(guid, "completed"))
    assert state["status"] == "completed"
    [job] = await engine.jobs()
    assert (job["kind"], job["status"]) == ("scheduleTimer", "done")


async def test_each_round_of_a_loop_is_a_new_call_with_its_own_key(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    guid = await engine.start(polling_loop(service_url))
    state = await running(engine.worker(), lambda: engine.until_status(guid, "completed", "error"))
    assert state["status"] == "completed" and state["state"]["variables"]["rounds"] == 3
    assert len(ledger.effects) == 3 and set(ledger.calls.values()) == {1}  # none taken for a repeat
    assert state["state"]["variables"]["last"]["firstTime"] is True


# A backend of this database whose last statement was its LISTEN: the worker's listening connection.
_SOMEONE_LISTENS = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %')"
)


async def test_an_idle_worker_is_woken_by_new_jobs_not_by_its_poll(
    engine: Engine, ledger: Ledger, service_url: str
) -> None:
    worker = engine.worker(poll_interval=60)  # polling alone would not look again within the test
    worker.start()
    try:
        await asyncio.sleep(0.3)  # the worker has looked once and found nothing
        deadline = time.monotonic() + 10
        while not await engine.pool.fetchval(_SOMEONE_LISTENS) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        guid = await engine.start(one_call(service_url), {"customerId": 1})
        state = await engine.until_status(guid, "completed", timeout=10)
    finally:
        await worker.stop()
    assert state["status"] == "completed" and ledger.total == 1


async def test_without_listening_the_poll_finds_the_job(engine: Engine, ledger: Ledger, service_url: str) -> None:
    worker = engine.worker(poll_interval=0.05, listen=False)
    worker.start()
    try:
        await asyncio.sleep(0.1)
        guid = await engine.start(one_call(service_url), {"customerId": 1})
        state = await engine.until_status(guid, "completed", timeout=10)
    finally:
        await worker.stop()
    assert state["status"] == "completed"


class CommitFails:
    """A unit-of-work factory whose first `times` commits fail with `error`: the feed-back
    transaction is rolled back, as when the database goes away at the worst moment."""

    def __init__(self, real: UnitOfWorkFactory, error: Exception, times: int) -> None:
        self.real = real
        self.error = error
        self.left = times

    def __call__(self) -> UnitOfWork:
        uow = self.real()
        commit = uow.commit

        async def failing_commit() -> None:
            if self.left > 0:
                self.left -= 1
                raise self.error
            await commit()

        uow.commit = failing_commit  # type: ignore[method-assign]
        return uow


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("database unavailable: ConnectionResetError: reset by peer"),
        VersionConflict("Process instance 'x' kept changing"),
        RuntimeError("the response said: secret-body-text"),
    ],
    ids=["storage-unavailable", "version-conflict", "unexpected"],
)
async def test_a_successful_call_whose_feed_back_fails_is_recorded_without_calling_again(
    engine: Engine, ledger: Ledger, service_url: str, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    caplog.set_level(logging.WARNING, logger="flowcore.worker")
    guid = await engine.start(one_call(service_url, timeout_ms=1000), {"customerId": 3})
    flaky = CommitFails(engine.deps.uow, error, times=3)
    # The claim's lease (1 s + 0.05 s) runs out during the tries (0.2 + 0.4 + 0.8 s) unless extended.
    worker = engine.worker(
        deps=dataclasses.replace(engine.deps, uow=flaky), lease_margin=0.05, feedback_backoff=0.2
    )
    state = await running(worker, lambda: engine.until_status(guid, "completed", "error"))
    assert state["status"] == "completed" and state["state"]["variables"]["score"]["echo"] == {"customer": 3}
    assert flaky.left == 0
    assert ledger.total == 1  # called once: the outcome in hand was recorded on the fourth try
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"]) == ("done", 1)
    assert caplog.text.count("its outcome could not be recorded") == 3
    assert type(error).__name__ in caplog.text and "secret-body-text" not in caplog.text


async def test_a_timer_whose_firing_keeps_failing_ends_in_error_after_its_attempts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    guid = await engine.start(zero_timer())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(domain_engine, "fire_timer", broken)
    worker = engine.worker(lease_margin=0.05, feedback_tries=1)  # every failure is left to the lease
    state = await running(worker, lambda: engine.until_status(guid, "error"))
    assert state["error"]["taskId"] == "Pause"
    assert state["error"]["errorMessage"] == "Timer 'Pause' could not fire: no worker recorded its firing in 3 attempts"
    [job] = await engine.jobs()
    assert (job["status"], job["attempts"]) == ("failed", 4)
    # fixed, the operator retries: the timer is scheduled afresh and fires
    monkeypatch.undo()
    await engine.send(RetryFailedTask(instance_guid=guid))
    state = await running(engine.worker(), lambda: engine.until_status(guid, "completed"))
    assert [j["status"] for j in await engine.jobs()] == ["failed", "done"]


async def test_a_job_whose_failure_cannot_be_recorded_either_is_failed_alone_instead_of_claimed_forever(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flowcore.worker")
    guid = await engine.start(zero_timer())
    never = CommitFails(engine.deps.uow, StorageUnavailable("database unavailable: test"), times=1_000_000)
    worker = engine.worker(deps=dataclasses.replace(engine.deps, uow=never), lease_margin=0.05, feedback_tries=1)
    job = await running(worker, lambda: engine.until_job("failed"))
    assert job["attempts"] == 4
    assert job["last_error"] == "attempts spent (3) and the failure could not be recorded on the instance"
    assert (await engine.state(guid))["status"] == "waiting"  # nothing could be written to it
    assert f"job {job['id']} (scheduleTimer) of instance {guid} marked failed" in caplog.text


async def test_the_worker_pool_runs_housekeeping(engine: Engine) -> None:
    old = engine.clock.now() - timedelta(hours=25)
    await engine.pool.execute(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, http_status, body, created_at) "
        "VALUES ('bank-a', 'old', 'h', '00', 200, '', $1), ('bank-a', 'fresh', 'h', '00', 200, '', now())",
        old,
    )
    worker = engine.worker(housekeeping=Housekeeping(engine.pool), housekeeping_interval=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while await engine.pool.fetchval("SELECT count(*) FROM idempotency_keys") > 1:
            assert time.monotonic() < deadline, "housekeeping did not run"
            await asyncio.sleep(0.02)
    finally:
        await worker.stop()
    assert await engine.pool.fetchval("SELECT key FROM idempotency_keys") == "fresh"
