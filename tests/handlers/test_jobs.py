"""Feeding job outcomes back (handlers.jobs) with in-memory fakes: every branch of a service call,
retry and skip after a failure, and the cases where the job no longer counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest

from commands.definitions import CreateProcessDefinition
from commands.instances import (
    CancelProcessInstance,
    GetProcessInstanceHistory,
    RetryFailedTask,
    SkipFailedTask,
    StartProcessInstance,
    StepForward,
)
from domain.errors import InvalidStateForCommand
from domain.service_outcome import BpmnErrorRaised, Permanent, Retryable, Succeeded
from domain.transition import CallService
from handlers.deps import Deps
from handlers.jobs import Settled, fire_timer, lease_expired, record_call_outcome
from tests.handlers.fakes import CountingIds, FakeJobRow, FakeUnitOfWork
from tests.handlers.job_harness import FAST, Harness, service_model, timer_model


@pytest.fixture
def h() -> Harness:
    return Harness()


async def test_a_2xx_completes_the_task_with_the_response_and_the_job_is_done(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 7})
    job = h.claim()
    assert h.row(job).effect == CallService(
        token_id=job.token_id, node_id="Score", endpoint="https://bureau.test/score/7", payload={"customerId": 7},
        retries=3, retry_backoff_ms=1000,
    )
    assert await record_call_outcome(h.deps, job, Succeeded(result={"value": 710}), FAST) is Settled.DONE
    state = await h.state(guid)
    assert state["status"] == "completed"
    assert state["state"]["variables"]["score"] == {"value": 710}
    assert state["state"]["variables"]["approved"] is True
    assert h.row(job).status == "done"
    assert (await h.event_types(guid)).count("TaskCompleted") == 2  # Score, then Decide


async def test_a_retryable_failure_reschedules_and_the_token_says_why_it_waits(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 7})
    job = h.claim()
    before = h.row_version(guid)
    outcome = Retryable(message="HTTP 503 from POST https://bureau.test/score/7", details="down")
    assert await record_call_outcome(h.deps, job, outcome, FAST) is Settled.RESCHEDULED
    next_try = h.clock.now() + timedelta(seconds=1)
    row = h.row(job)
    assert (row.status, row.locked_by, row.run_at, row.last_error) == ("pending", None, next_try, outcome.message)
    assert h.row_version(guid) == before + 1
    state = await h.state(guid)
    assert state["status"] == "running"
    [token] = [t for t in state["tokens"] if t["currentNodeId"] == "Score"]
    blocked = token["blockedOn"]
    assert (blocked["kind"], blocked["jobAttempt"], blocked["jobMaxAttempts"]) == ("job", 1, 4)
    assert (blocked["nextAttemptAt"], blocked["lastError"]) == (
        next_try.isoformat().replace("+00:00", "Z"), outcome.message
    )
    assert (await h.event_types(guid))[-1] == "ServiceCallRetryScheduled"
    # the next attempt waits for its time, then succeeds
    h.clock.advance(1)
    second = h.claim()
    assert (second.id, second.attempt) == (job.id, 2)
    assert await record_call_outcome(h.deps, second, Succeeded(result={"value": 500}), FAST) is Settled.DONE
    state = await h.state(guid)
    assert state["status"] == "completed" and state["state"]["variables"]["approved"] is False


async def test_backoff_doubles_between_attempts(h: Harness) -> None:
    await h.start(service_model(), {"customerId": 7})
    waits = []
    for _ in range(3):
        job = h.claim()
        assert await record_call_outcome(h.deps, job, Retryable(message="timeout"), FAST) is Settled.RESCHEDULED
        run_at = h.row(job).run_at
        assert run_at is not None
        waits.append((run_at - h.clock.now()).total_seconds())
        h.clock.current = run_at
    assert waits == [1, 2, 4]


async def test_retries_spent_put_the_instance_in_error_with_retry_skip_cancel(h: Harness) -> None:
    guid = await h.start(service_model(retries=1), {"customerId": 7})
    first = h.claim()
    assert await record_call_outcome(h.deps, first, Retryable(message="HTTP 502"), FAST) is Settled.RESCHEDULED
    h.clock.advance(5)
    last = h.claim()
    settled = await record_call_outcome(h.deps, last, Retryable(message="HTTP 502", details="bad gateway"), FAST)
    assert settled is Settled.FAILED
    assert h.row(last).status == "failed"
    state = await h.state(guid)
    assert state["status"] == "error"
    error = state["error"]
    assert (error["taskId"], error["taskName"]) == ("Score", "Credit Score")
    assert error["errorMessage"] == "Service task 'Score' (Credit Score) failed: HTTP 502 (gave up after 2 attempts)"
    assert error["errorDetails"] == "bad gateway" and error["occurredAt"] == h.clock.now()
    assert [a["action"] for a in state["nextActions"]] == ["retry", "skip", "cancel"]


async def test_a_4xx_fails_at_once(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 7})
    job = h.claim()
    outcome = Permanent(message="HTTP 404 from POST https://bureau.test/score/7", details="no such customer")
    assert await record_call_outcome(h.deps, job, outcome, FAST) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "error" and state["error"]["errorDetails"] == "no such customer"
    assert h.row(job).attempts == 1 and h.row(job).status == "failed"


async def test_a_bpmn_error_follows_the_error_boundary(h: Harness) -> None:
    guid = await h.start(service_model(boundary=True), {"customerId": 7})
    job = h.claim()
    outcome = BpmnErrorRaised(code="DENIED", message="blacklisted")
    assert await record_call_outcome(h.deps, job, outcome, FAST) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "completed"
    assert state["state"]["variables"]["_lastError"] == {"errorCode": "DENIED", "errorMessage": "blacklisted"}
    assert "approved" not in state["state"]["variables"]
    assert "ErrorCaught" in await h.event_types(guid)


async def test_an_uncaught_bpmn_error_puts_the_instance_in_error(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 7})
    job = h.claim()
    assert await record_call_outcome(h.deps, job, BpmnErrorRaised(code="OTHER", message="m"), FAST) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "error" and "OTHER" in state["error"]["errorMessage"]


async def test_retry_after_fixing_variables_calls_again_with_a_fresh_budget_and_key(h: Harness) -> None:
    guid = await h.start(service_model(retries=0), {"customerId": 0})
    first = h.claim()
    await record_call_outcome(h.deps, first, Permanent(message="HTTP 400", details="bad id"), FAST)
    assert (await h.state(guid))["status"] == "error"
    state = await h.send(
        RetryFailedTask(instance_guid=guid, updated_variables={"customerId": 9}, comment="fixed the id")
    )
    assert state["status"] == "running"
    second = h.claim()
    effect = h.row(second).effect
    assert isinstance(effect, CallService)
    assert (effect.endpoint, effect.attempt_group) == ("https://bureau.test/score/9", 2)
    assert (second.attempt, second.max_attempts, second.attempt_group) == (1, 1, 2)
    assert await record_call_outcome(h.deps, second, Succeeded(result={"value": 650}), FAST) is Settled.DONE
    done = await h.state(guid)
    assert done["status"] == "completed" and done["state"]["variables"]["approved"] is True
    history = await h.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
    [retried] = [e for e in history["items"] if e["eventType"] == "TaskRetried"]
    assert (retried["actor"], retried["comment"], retried["data"]) == (
        "ops-anna", "fixed the id", {"variablesChanged": {"customerId": 9}}
    )


async def test_skip_leaves_the_failed_task_without_calling(h: Harness) -> None:
    guid = await h.start(service_model(retries=0), {"customerId": 1})
    job = h.claim()
    await record_call_outcome(h.deps, job, Permanent(message="HTTP 403"), FAST)
    jobs_before = len(h.store.job_rows)
    state = await h.send(
        SkipFailedTask(instance_guid=guid, additional_data={"score": {"value": 999}}, comment="manual score")
    )
    assert state["status"] == "completed"
    assert state["state"]["variables"]["approved"] is True
    assert len(h.store.job_rows) == jobs_before  # nothing was called again
    history = await h.send(GetProcessInstanceHistory(instance_guid=guid, page_size=100))
    [skipped] = [e for e in history["items"] if e["eventType"] == "TaskSkipped"]
    assert (skipped["actor"], skipped["comment"]) == ("ops-anna", "manual score")


async def test_retry_and_skip_refuse_an_instance_not_in_error(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 1})
    before = h.row_version(guid)
    with pytest.raises(InvalidStateForCommand, match="not in error"):
        await h.send(RetryFailedTask(instance_guid=guid))
    with pytest.raises(InvalidStateForCommand, match="not in error"):
        await h.send(SkipFailedTask(instance_guid=guid))
    assert h.row_version(guid) == before


async def test_a_result_for_a_cancelled_instance_cancels_the_job_and_changes_nothing(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 1})
    job = h.claim()
    await h.send(CancelProcessInstance(instance_guid=guid, reason="customer withdrew"))
    before = h.row_version(guid)
    assert await record_call_outcome(h.deps, job, Succeeded(result={"value": 1}), FAST) is Settled.CANCELLED
    assert h.row(job).status == "cancelled"
    assert h.row_version(guid) == before
    assert (await h.state(guid))["status"] == "cancelled"


async def test_a_worker_that_lost_its_claim_changes_nothing(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 1})
    late = h.claim("slow-worker")
    current = h.reclaim(h.row(late), "other-worker")  # the lease ran out and another worker took it
    before = h.row_version(guid)
    assert await record_call_outcome(h.deps, late, Succeeded(result={"value": 1}), FAST) is Settled.LOST
    assert h.row_version(guid) == before
    assert (h.row(late).status, h.row(late).locked_by) == ("running", "other-worker")
    assert await record_call_outcome(h.deps, current, Succeeded(result={"value": 1}), FAST) is Settled.DONE
    assert (await h.state(guid))["status"] == "completed"


async def test_a_job_superseded_by_a_newer_one_for_its_token_is_cancelled(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 1})
    job = h.claim()
    old = h.row(job)
    h.store.job_rows[old.id + 1] = FakeJobRow(
        id=old.id + 1, tenant_id=old.tenant_id, instance_guid=old.instance_guid, token_id=old.token_id,
        node_id=old.node_id, kind=old.kind, effect=old.effect, max_attempts=old.max_attempts, run_at=h.clock.now(),
    )
    before = h.row_version(guid)
    assert await record_call_outcome(h.deps, job, Succeeded(result={"value": 1}), FAST) is Settled.CANCELLED
    assert h.row_version(guid) == before


async def test_a_lease_that_expired_on_the_last_attempt_fails_the_task(h: Harness) -> None:
    guid = await h.start(service_model(retries=1), {"customerId": 1})
    h.claim()  # attempt 1: its worker dies
    row = next(iter(h.store.job_rows.values()))
    h.reclaim(row)  # attempt 2 (the last): its worker dies too
    beyond = h.reclaim(row)  # claimed once more after the lease ran out: nothing is left
    assert beyond.attempt == 3 > beyond.max_attempts
    assert await record_call_outcome(h.deps, beyond, lease_expired(beyond), FAST) is Settled.FAILED
    state = await h.state(guid)
    assert state["status"] == "error"
    assert "lease expired" in state["error"]["errorMessage"]
    assert "gave up after 2 attempts" in state["error"]["errorMessage"]


async def test_a_due_timer_job_fires_the_timer(h: Harness) -> None:
    guid = await h.start(timer_model())
    assert (await h.state(guid))["status"] == "waiting"
    h.clock.advance(300)
    job = h.claim()
    assert job.kind == "scheduleTimer"
    assert await fire_timer(h.deps, job) is Settled.DONE
    assert (await h.state(guid))["status"] == "completed"
    assert h.row(job).status == "done"


class StaleFirstRead(FakeUnitOfWork):
    """A unit of work that reads a version another command has already replaced."""

    async def __aenter__(self) -> StaleFirstRead:
        opened = await super().__aenter__()
        read = opened.instances.get

        async def stale(tenant_id: str, instance_guid: str, *, for_update: bool = False) -> Any:
            record = await read(tenant_id, instance_guid, for_update=for_update)
            assert record is not None
            return msgspec.structs.replace(record, row_version=record.row_version - 1)

        opened.instances.get = stale  # type: ignore[method-assign]
        return self


async def test_a_lost_compare_and_set_is_retried_on_fresh_state(h: Harness) -> None:
    guid = await h.start(service_model(), {"customerId": 1})
    job = h.claim()
    opened: list[FakeUnitOfWork] = []

    def racing_uow() -> FakeUnitOfWork:
        uow = StaleFirstRead(h.store) if not opened else FakeUnitOfWork(h.store)
        opened.append(uow)
        return uow

    before = h.row_version(guid)
    deps = Deps(uow=racing_uow, clock=h.clock, ids=CountingIds())
    assert await record_call_outcome(deps, job, Succeeded(result={"value": 1}), FAST) is Settled.DONE
    assert [type(u) for u in opened] == [StaleFirstRead, FakeUnitOfWork]
    assert h.row_version(guid) == before + 1 and h.row(job).status == "done"
    assert (await h.state(guid))["status"] == "completed"


async def test_in_supervised_mode_the_job_completes_the_step_and_the_next_task_pauses(h: Harness) -> None:
    deployed = await h.send(CreateProcessDefinition(bpmn_xml=service_model()))
    started = await h.send(StartProcessInstance(
        id=deployed["id"], variables={"customerId": 3}, execution_mode="Supervised"
    ))
    guid = started["instanceGuid"]
    assert started["currentTask"]["taskId"] == "Score" and not h.store.job_rows  # paused before the call
    stepped = await h.send(StepForward(instance_guid=guid))
    assert stepped["status"] == "running"  # the step is the call, now a job
    job = h.claim()
    assert await record_call_outcome(h.deps, job, Succeeded(result={"value": 720}), FAST) is Settled.DONE
    state = await h.state(guid)
    assert state["status"] == "waiting" and state["currentTask"]["taskId"] == "Decide"
    assert state["state"]["variables"]["score"] == {"value": 720} and "approved" not in state["state"]["variables"]
    assert state["state"]["completedTasks"][-1] == "Score"


async def test_a_timer_claimed_before_its_time_goes_back_to_the_queue(h: Harness) -> None:
    guid = await h.start(timer_model())
    row = next(iter(h.store.job_rows.values()))
    early = h.reclaim(row)  # another process's clock ran ahead
    before = h.row_version(guid)
    assert await fire_timer(h.deps, early) is Settled.RESCHEDULED
    assert h.row_version(guid) == before
    back = h.row(early)
    assert (back.status, back.run_at) == ("pending", h.clock.now() + timedelta(minutes=5))
    h.clock.advance(300)
    assert await fire_timer(h.deps, h.claim()) is Settled.DONE
    assert (await h.state(guid))["status"] == "completed"


async def test_a_timer_claimed_early_again_and_again_spends_no_attempt(h: Harness) -> None:
    guid = await h.start(timer_model())
    row = next(iter(h.store.job_rows.values()))
    for _ in range(row.max_attempts + 2):  # a process whose clock runs ahead keeps claiming it
        assert await fire_timer(h.deps, h.reclaim(row)) is Settled.RESCHEDULED
        assert (h.store.job_rows[row.id].attempts, h.store.job_rows[row.id].status) == (0, "pending")
        row = h.store.job_rows[row.id]
    h.clock.advance(300)
    job = h.claim()
    assert job.attempt == 1
    assert await fire_timer(h.deps, job) is Settled.DONE
    assert (await h.state(guid))["status"] == "completed"


async def test_a_timer_claimed_past_its_last_attempt_fails_at_the_timer_and_can_be_retried(h: Harness) -> None:
    guid = await h.start(timer_model())
    h.clock.advance(300)
    row = next(iter(h.store.job_rows.values()))
    for _ in range(row.max_attempts):
        h.reclaim(row)  # each worker died (or could not record the firing) and the lease ran out
    beyond = h.reclaim(row)
    assert beyond.attempt == row.max_attempts + 1
    assert await fire_timer(h.deps, beyond) is Settled.FAILED
    failed = h.row(beyond)
    assert failed.status == "failed"
    assert failed.last_error == f"no worker recorded its firing in {row.max_attempts} attempts"
    state = await h.state(guid)
    assert state["status"] == "error"
    assert state["error"]["taskId"] == "Pause"
    assert state["error"]["errorMessage"] == (
        f"Timer 'Pause' could not fire: no worker recorded its firing in {row.max_attempts} attempts"
    )
    assert [a["action"] for a in state["nextActions"]] == ["retry", "skip", "cancel"]
    # the operator retries: the timer is scheduled afresh, with a new job and a fresh budget
    assert (await h.send(RetryFailedTask(instance_guid=guid)))["status"] == "waiting"
    h.clock.advance(300)
    again = h.claim()
    assert (again.id != beyond.id, again.attempt) == (True, 1)
    assert await fire_timer(h.deps, again) is Settled.DONE
    assert (await h.state(guid))["status"] == "completed"
