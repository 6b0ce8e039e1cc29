"""Deleting what flowcore no longer needs, across tenants: finished jobs past their retention
and idempotency keys past their lifetime (24 h).

The worker pool runs a pass every few minutes (infra.worker). Each table is cleared in batches
of bounded size, each its own short autocommit statement, so a large backlog never holds locks
or a transaction for long; a pass stops after a bounded number of batches and the next one
carries on. Passes of several processes at once skip each other's rows (SKIP LOCKED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from infra.database import Db, acquired
from infra.idempotency_repository import PostgresIdempotencyRepository
from infra.job_store import delete_finished_jobs

DEFAULT_JOB_RETENTION = timedelta(hours=168)


@dataclass(frozen=True, slots=True)
class Swept:
    """How many rows one pass deleted."""

    jobs: int = 0
    idempotency_keys: int = 0

    @property
    def total(self) -> int:
        return self.jobs + self.idempotency_keys


class Housekeeping:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        job_retention: timedelta = DEFAULT_JOB_RETENTION,
        batch: int = 1000,
        max_batches: int = 100,
        acquire_timeout: float = 10.0,
    ) -> None:
        if batch < 1 or max_batches < 1:
            raise ValueError("housekeeping needs a batch size and a number of batches of at least 1")
        self._pool = pool
        self._retention = job_retention
        self._batch = batch
        self._max_batches = max_batches
        self._timeout = acquire_timeout

    @property
    def job_retention(self) -> timedelta:
        return self._retention

    async def run(self, now: datetime, *, keep_going: Callable[[], bool] = lambda: True) -> Swept:
        """One pass: finished jobs last changed more than the retention ago (of instances that
        are no longer live), then idempotency keys past their lifetime. `keep_going` is asked
        between batches (a stopping worker ends the pass early)."""
        before = now - self._retention
        jobs = await self._drain(lambda db: delete_finished_jobs(db, before=before, limit=self._batch), keep_going)
        keys = await self._drain(
            lambda db: PostgresIdempotencyRepository(db).prune(now, limit=self._batch), keep_going
        )
        return Swept(jobs=jobs, idempotency_keys=keys)

    async def _drain(self, delete: Callable[[Db], Awaitable[int]], keep_going: Callable[[], bool]) -> int:
        total = 0
        for _ in range(self._max_batches):
            async with acquired(self._pool, timeout=self._timeout) as db:
                deleted = await delete(db)
            total += deleted
            if deleted < self._batch or not keep_going():
                break
        return total
