"""Turns a transition's effects into job rows, in the transaction that saves the new state."""

from __future__ import annotations

from datetime import datetime

from domain.transition import CallService, CancelJobs, Effect, ScheduleTimer
from infra import sql
from infra.database import Db
from infra.jsonb import to_jsonb

# A timer fires by running one engine step; a worker dying mid-step gets it claimed again.
TIMER_MAX_ATTEMPTS = 3
SETTLED_STATUSES = frozenset({"done", "failed", "cancelled"})


def job_kind(effect: Effect) -> str:
    tag = effect.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def idempotency_key(instance_guid: str, effect: CallService | ScheduleTimer) -> str:
    """Stable per (instance, token, node, attempt group): what a receiver de-duplicates calls on.
    (A token's later visits to the same task get a `~n` suffix when the job is stored.)"""
    base = f"{instance_guid}:{effect.token_id}:{effect.node_id}"
    if isinstance(effect, CallService):
        return f"{base}:{effect.attempt_group}"
    return f"{base}:timer:{effect.due_at.isoformat()}"


class PostgresJobRepository:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def enqueue(self, tenant_id: str, instance_guid: str, effects: list[Effect], now: datetime) -> None:
        # Cancellations refer to jobs that existed before this transition, never to the ones
        # it creates, whatever order the engine listed them in.
        for effect in effects:
            if isinstance(effect, CancelJobs):
                await self._db.execute(sql.CANCEL_TOKEN_JOBS, tenant_id, instance_guid, effect.token_id, now)
        rows: list[tuple[object, ...]] = []
        calls: list[tuple[object, ...]] = []
        due_now = False
        for effect in effects:
            match effect:
                case CancelJobs():
                    continue
                case CallService():
                    run_at, max_attempts = now, max(1, effect.retries + 1)
                case ScheduleTimer():
                    run_at, max_attempts = effect.due_at, TIMER_MAX_ATTEMPTS
                case _:
                    raise TypeError(f"no job for effect {type(effect).__name__}")
            due_now = due_now or run_at <= now
            (calls if isinstance(effect, CallService) else rows).append(
                (
                    tenant_id,
                    instance_guid,
                    effect.token_id,
                    effect.node_id,
                    job_kind(effect),
                    to_jsonb(effect),
                    max_attempts,
                    run_at,
                    idempotency_key(instance_guid, effect),
                    now,
                )
            )
        if calls:
            await self._db.executemany(sql.INSERT_CALL_JOB, calls)
        if rows:
            await self._db.executemany(sql.INSERT_JOB, rows)
        if due_now:  # a timer for later wakes nobody: the workers' polling finds it in time
            await self._db.execute(sql.NOTIFY_JOBS)

    # -- the worker's feed-back transaction (see handlers.jobs) ---------------------------------

    async def hold(self, job_id: int, worker_id: str, attempt: int) -> bool:
        return await self._db.fetchval(sql.HOLD_JOB, job_id, worker_id, attempt) is not None

    async def is_latest_for_token(self, tenant_id: str, instance_guid: str, token_id: int, job_id: int) -> bool:
        return not await self._db.fetchval(sql.LATER_JOB_FOR_TOKEN, tenant_id, instance_guid, token_id, job_id)

    async def settle(
        self, job_id: int, worker_id: str, attempt: int, *, status: str, error: str | None, now: datetime
    ) -> bool:
        if status not in SETTLED_STATUSES:
            raise ValueError(f"a job cannot be settled as {status!r}")
        done = await self._db.execute(sql.SETTLE_HELD_JOB, job_id, worker_id, attempt, now, status, error)
        return done == "UPDATE 1"

    async def retry_at(
        self, job_id: int, worker_id: str, attempt: int, *, run_at: datetime, error: str, now: datetime
    ) -> bool:
        done = await self._db.execute(sql.RETRY_HELD_JOB, job_id, worker_id, attempt, now, run_at, error)
        return done == "UPDATE 1"

    async def put_back(self, job_id: int, worker_id: str, attempt: int, *, run_at: datetime, now: datetime) -> bool:
        done = await self._db.execute(sql.RELEASE_HELD_JOB, job_id, worker_id, attempt, now, run_at)
        return done == "UPDATE 1"
