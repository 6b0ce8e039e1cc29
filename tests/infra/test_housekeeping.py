"""Housekeeping on real PostgreSQL: finished jobs past their retention and expired idempotency
keys go, in bounded batches and across tenants; everything still needed stays."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import pytest

from domain.transition import CallService
from handlers.ports import StoredResponse
from infra.housekeeping import Housekeeping
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import T0, instance

NOW = T0 + timedelta(days=30)
RETENTION = timedelta(hours=168)
RESPONSE = StoredResponse(request_hash="h", status_code="00", http_status=200, body=b"{}")


def call(token: int) -> CallService:
    return CallService(token_id=token, node_id="Score", endpoint="https://svc.test/x")


async def add_instance(uow_factory: PostgresUnitOfWorkFactory, tenant: str, guid: str, status: str) -> None:
    async with uow_factory() as uow:
        await uow.instances.add(instance(guid, tenant=tenant, status=status))
        await uow.commit()


async def add_job(
    uow_factory: PostgresUnitOfWorkFactory, pool: asyncpg.Pool, tenant: str, guid: str, status: str, changed: datetime
) -> int:
    """A job of instance `guid`, brought to `status` at `changed` (what the worker's settling does)."""
    async with uow_factory() as uow:
        await uow.jobs.enqueue(tenant, guid, [call(1)], T0)
        await uow.commit()
    job_id: int = await pool.fetchval("SELECT max(id) FROM jobs")
    await pool.execute("UPDATE jobs SET status = $2, updated_at = $3 WHERE id = $1", job_id, status, changed)
    return job_id


async def remaining_jobs(pool: asyncpg.Pool) -> set[int]:
    return {row["id"] for row in await pool.fetch("SELECT id FROM jobs")}


async def test_finished_jobs_past_their_retention_go_and_everything_else_stays(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    old, recent = NOW - RETENTION - timedelta(minutes=1), NOW - RETENTION + timedelta(minutes=1)
    await add_instance(uow_factory, "acme", "done-1", "completed")
    await add_instance(uow_factory, "globex", "done-2", "cancelled")
    await add_instance(uow_factory, "acme", "live-1", "waiting")
    await add_instance(uow_factory, "acme", "failed-1", "error")
    gone = {
        await add_job(uow_factory, db_pool, "acme", "done-1", "done", old),
        await add_job(uow_factory, db_pool, "acme", "done-1", "failed", old),
        await add_job(uow_factory, db_pool, "globex", "done-2", "cancelled", old),  # another tenant
        await add_job(uow_factory, db_pool, "acme", "deleted", "done", old),  # its instance is gone
    }
    kept = {
        await add_job(uow_factory, db_pool, "acme", "done-1", "done", recent),  # within the retention
        await add_job(uow_factory, db_pool, "acme", "done-1", "pending", old),  # not finished
        await add_job(uow_factory, db_pool, "acme", "done-1", "running", old),
        # a live instance's jobs number its next calls' idempotency keys
        await add_job(uow_factory, db_pool, "acme", "live-1", "done", old),
        await add_job(uow_factory, db_pool, "acme", "failed-1", "failed", old),
    }
    swept = await Housekeeping(db_pool, job_retention=RETENTION, batch=2).run(NOW)
    assert (swept.jobs, swept.idempotency_keys, swept.total) == (4, 0, 4)
    assert await remaining_jobs(db_pool) == kept
    assert not gone & kept


async def test_expired_idempotency_keys_go_across_tenants_and_live_ones_stay(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    async with uow_factory() as uow:
        for n in range(5):
            await uow.idempotency.put("acme", f"old-{n}", RESPONSE, NOW - timedelta(hours=24, minutes=n))
        await uow.idempotency.put("globex", "old", RESPONSE, NOW - timedelta(days=3))
        await uow.idempotency.put("acme", "fresh", RESPONSE, NOW - timedelta(hours=23, minutes=59))
        await uow.commit()
    swept = await Housekeeping(db_pool, batch=2).run(NOW)
    assert (swept.jobs, swept.idempotency_keys) == (0, 6)
    assert [tuple(r) for r in await db_pool.fetch("SELECT tenant_id, key FROM idempotency_keys")] == [("acme", "fresh")]


async def test_a_pass_stops_after_its_batches_and_the_next_carries_on(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await add_instance(uow_factory, "acme", "done-1", "completed")
    old = NOW - RETENTION - timedelta(days=1)
    for _ in range(5):
        await add_job(uow_factory, db_pool, "acme", "done-1", "done", old)
    housekeeping = Housekeeping(db_pool, job_retention=RETENTION, batch=2, max_batches=2)
    assert (await housekeeping.run(NOW)).jobs == 4
    assert len(await remaining_jobs(db_pool)) == 1
    assert (await housekeeping.run(NOW)).jobs == 1
    assert await remaining_jobs(db_pool) == set()


async def test_a_pass_asked_to_stop_ends_after_the_current_batch(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await add_instance(uow_factory, "acme", "done-1", "completed")
    for _ in range(3):
        await add_job(uow_factory, db_pool, "acme", "done-1", "done", NOW - timedelta(days=8))
    swept = await Housekeeping(db_pool, batch=1).run(NOW, keep_going=lambda: False)
    assert swept.jobs == 1 and len(await remaining_jobs(db_pool)) == 2


def test_batches_must_hold_something(db_pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Housekeeping(db_pool, batch=0)
