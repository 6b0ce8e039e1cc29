"""Feeding a job's outcome back into its instance: one transaction per outcome.

The worker claims a job, performs it outside any transaction, and hands the outcome here. In
one unit of work this module
1. holds the job row (locked, and only if this worker still holds it for this attempt: a worker
   that overran its lease finds it claimed again and changes nothing),
2. loads the instance (locked) and checks that the token still waits on exactly this job
   (cancelled, skipped, stepped back or moved on: the job is settled "cancelled" and the
   instance is left alone),
3. runs the engine step the outcome calls for (complete the task, fail it, or note the attempt
   and its next try on the token), saves the instance compare-and-set on its row version,
   writes the history and any new jobs the step created,
4. settles the job (done / failed / rescheduled),
and commits all of it together, or nothing. So a state transition happens exactly once however
often a call is repeated, and a job is never left running once its outcome is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain import engine, job_progress
from domain.errors import DomainError
from domain.model import Definition
from domain.runner import ProcessLookup
from domain.service_outcome import Complete, GiveUp, Outcome, Plan, Retryable, TryAgain, plan
from domain.state import InstanceState
from domain.transition import Transition
from handlers.called_processes import preload_called_processes
from handlers.deps import Deps
from handlers.errors import VersionConflict
from handlers.instance_steps import load_definition_of, persist_side_records, record_from
from handlers.ports import InstanceRecord, UnitOfWork

log = logging.getLogger("flowcore.jobs")

CALL_SERVICE = "callService"
SCHEDULE_TIMER = "scheduleTimer"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as the worker claimed it: which instance and token it serves, and which claim this is."""

    id: int
    tenant_id: str
    instance_guid: str
    token_id: int
    node_id: str
    kind: str  # "callService" | "scheduleTimer"
    attempt: int  # claims so far, this one included
    max_attempts: int
    worker_id: str
    attempt_group: int = 1  # service calls: the group of attempts RetryFailedTask started
    retry_backoff_ms: int = 1000


class Settled(StrEnum):
    """How a job ended up after its outcome was fed back."""

    DONE = "done"  # the task completed (or the timer fired)
    FAILED = "failed"  # the task failed for good, or raised a BPMN error
    RESCHEDULED = "rescheduled"  # another attempt is due later
    CANCELLED = "cancelled"  # the token no longer waits on this job; the instance is untouched
    LOST = "lost"  # this worker no longer holds the job; nothing was changed


_Step = Callable[[Definition, InstanceState, datetime, ProcessLookup], Transition]
_Settle = Callable[[UnitOfWork, datetime], Awaitable[Settled]]


@dataclass(frozen=True, slots=True)
class Backoff:
    cap_ms: int = 300_000
    jitter: float = 0.5  # in [0, 1): where in the upper half of the backoff the retry lands


def lease_expired(job: ClaimedJob) -> Retryable:
    """The outcome of an attempt whose worker died: it counts, and it is worth another try."""
    return Retryable(
        message=f"The worker running attempt {job.attempt - 1} stopped before finishing it (lease expired)"
    )


async def record_call_outcome(deps: Deps, job: ClaimedJob, outcome: Outcome, backoff: Backoff = Backoff()) -> Settled:
    """Complete, fail or reschedule the service task of `job` after one attempt ended with `outcome`."""
    decided: Plan | None = None

    def step(definition: Definition, state: InstanceState, now: datetime, lookup: ProcessLookup) -> Transition:
        nonlocal decided
        decided = plan(
            outcome,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            initial_backoff_ms=job.retry_backoff_ms,
            backoff_cap_ms=backoff.cap_ms,
            jitter=backoff.jitter,
            now=now,
        )
        match decided:
            case Complete(result=result):
                return engine.complete_task(
                    definition, state, now=now, ids=deps.ids, result=result, token_id=job.token_id,
                    lookup=lookup, limits=deps.limits,
                )
            case TryAgain(at=run_at, error=error):
                return job_progress.note_job_attempt(
                    state, token_id=job.token_id, node_id=job.node_id, attempt=job.attempt,
                    max_attempts=job.max_attempts, next_attempt_at=run_at, last_error=error, now=now,
                )
            case GiveUp(message=message, details=details, error_code=code):
                return engine.fail_task(
                    definition, state, token_id=job.token_id, message=message, details=details, error_code=code,
                    now=now, ids=deps.ids, lookup=lookup, limits=deps.limits,
                )
        raise TypeError(f"unknown plan {decided!r}")  # pragma: no cover - the match is exhaustive

    async def settle(uow: UnitOfWork, now: datetime) -> Settled:
        held = (job.id, job.worker_id, job.attempt)
        match decided:
            case TryAgain(at=run_at, error=error):
                await _require(uow.jobs.retry_at(*held, run_at=run_at, error=error, now=now))
                return Settled.RESCHEDULED
            case GiveUp(message=message):
                await _require(uow.jobs.settle(*held, status="failed", error=message, now=now))
                return Settled.FAILED
        await _require(uow.jobs.settle(*held, status="done", error=None, now=now))
        return Settled.DONE

    return await _feed_back(deps, job, step, settle)


def attempts_spent(job: ClaimedJob) -> bool:
    """Claimed past its last attempt: the workers before this one died or kept failing to record
    an outcome, and the job must end now rather than be claimed again forever."""
    return job.attempt > job.max_attempts


async def fire_timer(deps: Deps, job: ClaimedJob) -> Settled:
    """A timer job is due: its token moves on. Claimed early (another process's clock runs ahead),
    it goes back to the queue until its due time, that claim not counted. Claimed past its last
    attempt, the instance fails at the timer instead (RetryFailedTask schedules it afresh)."""
    spent = f"no worker recorded its firing in {job.max_attempts} attempts" if attempts_spent(job) else None

    def step(definition: Definition, state: InstanceState, now: datetime, lookup: ProcessLookup) -> Transition:
        if spent is not None:
            return engine.fail_timer(
                definition, state, token_id=job.token_id, message=spent, now=now, ids=deps.ids, lookup=lookup,
                limits=deps.limits,
            )
        token = next((t for t in state.tokens if t.id == job.token_id), None)
        due = token.blocked_on.due_at if token is not None and token.blocked_on is not None else None
        if due is not None and now < due:
            raise _NotYet(due)
        return engine.fire_timer(
            definition, state, token_id=job.token_id, now=now, ids=deps.ids, lookup=lookup, limits=deps.limits
        )

    async def settle(uow: UnitOfWork, now: datetime) -> Settled:
        held = (job.id, job.worker_id, job.attempt)
        if spent is not None:
            await _require(uow.jobs.settle(*held, status="failed", error=spent, now=now))
            return Settled.FAILED
        await _require(uow.jobs.settle(*held, status="done", error=None, now=now))
        return Settled.DONE

    return await _feed_back(deps, job, step, settle, needs_service_wait=False)


class _NoLongerHeld(Exception):
    """The job row changed hands between hold() and the settling write (never expected)."""


class _NotYet(Exception):
    """The job was claimed before its time: it goes back to the queue, the instance is untouched."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at.isoformat())
        self.at = at


async def _require(done: Awaitable[bool]) -> None:
    if not await done:
        raise _NoLongerHeld()


async def _cancel(uow: UnitOfWork, job: ClaimedJob, now: datetime, why: str) -> Settled:
    await uow.jobs.settle(job.id, job.worker_id, job.attempt, status="cancelled", error=why, now=now)
    await uow.commit()
    log.info("job %s of instance %s cancelled: %s", job.id, job.instance_guid, why)
    return Settled.CANCELLED


async def _still_waiting(
    uow: UnitOfWork, job: ClaimedJob, record: InstanceRecord | None, *, service: bool
) -> str | None:
    """Why the token no longer waits on `job`, or None when it does."""
    if record is None:
        return "the instance no longer exists"
    if service and not job_progress.waits_on_job(record.state, job.token_id, job.node_id):
        return f"token {job.token_id} no longer waits on a service call at '{job.node_id}'"
    if not await uow.jobs.is_latest_for_token(job.tenant_id, job.instance_guid, job.token_id, job.id):
        return f"token {job.token_id} has a newer job"
    return None


async def _feed_back(
    deps: Deps,
    job: ClaimedJob,
    step: _Step,
    settle: _Settle,
    *,
    needs_service_wait: bool = True,
) -> Settled:
    for _ in range(deps.max_conflict_retries + 1):
        async with deps.uow() as uow:
            if not await uow.jobs.hold(job.id, job.worker_id, job.attempt):
                return Settled.LOST
            now = deps.clock.now()
            record = await uow.instances.get(job.tenant_id, job.instance_guid, for_update=True)
            why = await _still_waiting(uow, job, record, service=needs_service_wait)
            if why is not None or record is None:
                return await _cancel(uow, job, now, why or "the instance no longer exists")
            try:
                _, definition = await load_definition_of(uow, deps, record)
                called = await preload_called_processes(
                    uow, deps, job.tenant_id, definition, record.state.called_definitions
                )
                transition = step(definition, record.state, now, called.lookup)
                called.pin(transition.state)
            except _NotYet as early:
                await _require(uow.jobs.put_back(job.id, job.worker_id, job.attempt, run_at=early.at, now=now))
                await uow.commit()
                return Settled.RESCHEDULED
            except DomainError as exc:
                # The engine refuses the step (the instance finished, the token is not where
                # the job expects it, the definition is gone): nothing waits on this job.
                return await _cancel(uow, job, now, exc.message)
            updated = record_from(record, transition, now)
            if not await uow.instances.save(updated, record.row_version):
                continue  # another command won the race: retry on its state
            await persist_side_records(uow, job.tenant_id, job.instance_guid, transition, now)
            try:
                settled = await settle(uow, now)
            except _NoLongerHeld:
                return Settled.LOST  # rolled back with everything else
            await uow.commit()
            return settled
    raise VersionConflict(
        f"Process instance '{job.instance_guid}' kept changing while job {job.id} was fed back.",
        details={"instanceGuid": job.instance_guid, "jobId": job.id},
    )
