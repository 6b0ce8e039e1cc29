"""The job queue the worker drives: claim due jobs under a lease, then settle each one.

Claiming uses FOR UPDATE SKIP LOCKED, so any number of workers (in one process or many) take
disjoint batches without waiting on each other. A claim is a lease: a worker that dies simply
lets it run out and the job is claimed again (attempts counts claims). Whatever a worker
does with a job afterwards checks that it still holds it under that very claim, so a worker
that overran its lease cannot undo the new holder. (Settling a job together with its instance
is the feed-back transaction's: infra.job_repository.)
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
from infra.database import Db, Row, acquire, acquired, translated_errors

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


def job_from_row(row: Row) -> Job:
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


async def claim_due_jobs(
    db: Db, *, worker_id: str, limit: int, lease_margin_seconds: float, now: datetime
) -> list[Job]:
    """Up to `limit` due jobs, now running for worker_id, each leased for its own call timeout
    plus the margin; oldest due first."""
    rows = await db.fetch(sql.CLAIM_DUE_JOBS, now, limit, worker_id, float(lease_margin_seconds))
    return sorted((job_from_row(row) for row in rows), key=lambda job: (job.run_at, job.id))


async def release_job(db: Db, job_id: int, worker_id: str, attempt: int, *, now: datetime) -> bool:
    """Hand a job this worker holds back to the queue at once, its claim not counted."""
    return _one(await db.execute(sql.RELEASE_HELD_JOB, job_id, worker_id, attempt, now, now))


async def extend_lease(db: Db, job_id: int, worker_id: str, attempt: int, *, seconds: float, now: datetime) -> bool:
    """Keep a held job at least until now + seconds; False when this worker no longer holds it."""
    return _one(await db.execute(sql.EXTEND_HELD_JOB_LEASE, job_id, worker_id, attempt, now, float(seconds)))


async def fail_job(db: Db, job_id: int, worker_id: str, attempt: int, *, error: str, now: datetime) -> bool:
    """Give up on a held job for good, without touching its instance."""
    return _one(await db.execute(sql.SETTLE_HELD_JOB, job_id, worker_id, attempt, now, "failed", error))


async def delete_finished_jobs(db: Db, *, before: datetime, limit: int) -> int:
    """Housekeeping: delete up to `limit` finished jobs last changed before `before` whose instance
    is no longer live; returns how many went."""
    return _count(await db.execute(sql.DELETE_FINISHED_JOBS, before, limit))


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


def _one(status: str) -> bool:
    return status == "UPDATE 1"


class PostgresJobStore:
    """The same operations, each on its own pooled connection in autocommit."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._timeout = acquire_timeout

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

    async def extend_lease(self, job_id: int, worker_id: str, attempt: int, *, seconds: float, now: datetime) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await extend_lease(db, job_id, worker_id, attempt, seconds=seconds, now=now)

    async def fail(self, job_id: int, worker_id: str, attempt: int, *, error: str, now: datetime) -> bool:
        async with acquired(self._pool, timeout=self._timeout) as db:
            return await fail_job(db, job_id, worker_id, attempt, error=error, now=now)

    @contextlib.asynccontextmanager
    async def listening(self, wake: Callable[[], None]) -> AsyncIterator[asyncio.Event]:
        """Call `wake` whenever new due jobs are committed, while inside the block. Holds one
        pooled connection for that long; the event yielded is set if that connection is lost."""
        lost = asyncio.Event()
        connection = await acquire(self._pool, self._timeout)
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
