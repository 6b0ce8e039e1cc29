"""The job queue the worker drives: claim due jobs under a lease, then settle each one.

Claiming uses FOR UPDATE SKIP LOCKED, so any number of workers (in one process or many) take
disjoint batches without waiting on each other. A claim is a lease: a worker that dies simply
lets it run out and the job is claimed again (attempts counts claims). Settling a job checks
that the caller still holds it, so a worker that overran its lease cannot undo the new holder.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import asyncpg
import msgspec

from domain.transition import CallService, ScheduleTimer
from infra import sql
from infra.database import Db, Row, acquired, translated_errors

JobEffect = CallService | ScheduleTimer

_effect_decoder = msgspec.json.Decoder(JobEffect)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tenant_id: str
    instance_guid: str
    token_id: int
    node_id: str
    kind: str
    effect: JobEffect
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    lease_until: datetime | None
    locked_by: str | None
    last_error: str | None
    idempotency_key: str
    created_at: datetime
    updated_at: datetime


def _job(row: Row) -> Job:
    return Job(
        id=row["id"],
        tenant_id=row["tenant_id"],
        instance_guid=row["instance_guid"],
        token_id=row["token_id"],
        node_id=row["node_id"],
        kind=row["kind"],
        effect=_effect_decoder.decode(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=row["run_at"],
        lease_until=row["lease_until"],
        locked_by=row["locked_by"],
        last_error=row["last_error"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def claim_jobs(db: Db, *, worker_id: str, limit: int, lease_seconds: float, now: datetime) -> list[Job]:
    """Up to `limit` due jobs, now running and leased to worker_id until now + lease_seconds."""
    rows = await db.fetch(sql.CLAIM_JOBS, now, limit, worker_id, float(lease_seconds))
    return sorted((_job(row) for row in rows), key=lambda job: (job.run_at, job.id))


async def claim_due_jobs(
    db: Db, *, worker_id: str, limit: int, lease_margin_seconds: float, now: datetime
) -> list[Job]:
    """Like claim_jobs, but each job is leased for its own call timeout plus the margin."""
    rows = await db.fetch(sql.CLAIM_DUE_JOBS, now, limit, worker_id, float(lease_margin_seconds))
    return sorted((_job(row) for row in rows), key=lambda job: (job.run_at, job.id))


async def release_job(db: Db, job_id: int, worker_id: str, attempt: int, *, now: datetime) -> bool:
    """Hand a job this worker holds back to the queue at once, its claim not counted."""
    return _one(await db.execute(sql.RELEASE_HELD_JOB, job_id, worker_id, attempt, now))


async def get_job(db: Db, job_id: int) -> Job | None:
    row = await db.fetchrow(sql.GET_JOB, job_id)
    return None if row is None else _job(row)


async def extend_lease(db: Db, job_id: int, worker_id: str, *, lease_seconds: float, now: datetime) -> bool:
    return _one(await db.execute(sql.EXTEND_JOB_LEASE, job_id, worker_id, now, float(lease_seconds)))


async def complete_job(db: Db, job_id: int, worker_id: str, *, now: datetime) -> bool:
    return _one(await db.execute(sql.COMPLETE_JOB, job_id, worker_id, now))


async def fail_job(db: Db, job_id: int, worker_id: str, *, error: str, now: datetime) -> bool:
    """Give up on the job for good."""
    return _one(await db.execute(sql.FAIL_JOB, job_id, worker_id, now, error))


async def reschedule_job(
    db: Db, job_id: int, worker_id: str, *, run_at: datetime, error: str | None, now: datetime
) -> bool:
    """Hand the job back to the queue, due again at run_at (a retry with backoff)."""
    return _one(await db.execute(sql.RESCHEDULE_JOB, job_id, worker_id, now, run_at, error))


def _one(status: str) -> bool:
    return status == "UPDATE 1"


class PostgresJobStore:
    """The same operations, each on its own pooled connection in autocommit."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._timeout = acquire_timeout

    async def claim(self, *, worker_id: str, limit: int, lease_seconds: float, now: datetime) -> list[Job]:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await claim_jobs(db, worker_id=worker_id, limit=limit, lease_seconds=lease_seconds, now=now)

    async def claim_due(
        self, *, worker_id: str, limit: int, lease_margin_seconds: float, now: datetime
    ) -> list[Job]:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await claim_due_jobs(
                db, worker_id=worker_id, limit=limit, lease_margin_seconds=lease_margin_seconds, now=now
            )

    async def release(self, job_id: int, worker_id: str, attempt: int, *, now: datetime) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await release_job(db, job_id, worker_id, attempt, now=now)

    async def get(self, job_id: int) -> Job | None:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await get_job(db, job_id)

    async def extend_lease(self, job_id: int, worker_id: str, *, lease_seconds: float, now: datetime) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await extend_lease(db, job_id, worker_id, lease_seconds=lease_seconds, now=now)

    async def complete(self, job_id: int, worker_id: str, *, now: datetime) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await complete_job(db, job_id, worker_id, now=now)

    async def fail(self, job_id: int, worker_id: str, *, error: str, now: datetime) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await fail_job(db, job_id, worker_id, error=error, now=now)

    async def reschedule(
        self, job_id: int, worker_id: str, *, run_at: datetime, error: str | None, now: datetime
    ) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await reschedule_job(db, job_id, worker_id, run_at=run_at, error=error, now=now)

    @contextlib.asynccontextmanager
    async def listening(self, wake: Callable[[], None]) -> AsyncIterator[asyncio.Event]:
        """Call `wake` whenever new due jobs are committed, while inside the block. Holds one
        pooled connection for that long; the event yielded is set if that connection is lost."""
        lost = asyncio.Event()
        with translated_errors():
            connection = await self._pool.acquire(timeout=self._timeout)
        try:
            def notified(*_: object) -> None:
                wake()

            def terminated(*_: object) -> None:
                lost.set()

            connection.add_termination_listener(terminated)
            with translated_errors():
                await connection.add_listener(sql.JOBS_CHANNEL, notified)
            try:
                yield lost
            finally:
                connection.remove_termination_listener(terminated)
                if not connection.is_closed():
                    try:
                        await connection.remove_listener(sql.JOBS_CHANNEL, notified)
                    except Exception:
                        # Released connections are not reset (infra.database.PooledConnection):
                        # one still listening must not go back to the pool.
                        connection.terminate()
        finally:
            await self._pool.release(connection)
