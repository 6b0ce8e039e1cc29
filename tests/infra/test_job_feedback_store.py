"""The job queue operations the worker's feed-back uses, on real PostgreSQL: per-call leases,
holding a claim inside a transaction, settling and rescheduling only what one still holds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from domain.transition import CallService, ScheduleTimer
from infra.job_store import Job, PostgresJobStore, job_from_row
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import T0, at


def call(token: int, timeout_ms: int = 5000) -> CallService:
    return CallService(token_id=token, node_id="Score", endpoint="https://svc.test/x", timeout_ms=timeout_ms)


async def one_job(pool: asyncpg.Pool, job_id: int) -> Job:
    return job_from_row(await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id))


async def enqueue(uow_factory: PostgresUnitOfWorkFactory, *effects: CallService | ScheduleTimer) -> None:
    async with uow_factory() as uow:
        await uow.jobs.enqueue("acme", "i-1", list(effects), T0)
        await uow.commit()


async def test_each_claim_is_leased_for_its_own_timeout_plus_the_margin(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1, timeout_ms=2000), call(2, timeout_ms=60_000),
                  ScheduleTimer(token_id=3, node_id="Wait", due_at=T0))
    store = PostgresJobStore(db_pool)
    jobs = await store.claim_due(worker_id="w1", limit=10, lease_margin_seconds=5, now=T0)
    leases = {job.token_id: job.lease_until for job in jobs}
    assert leases == {1: T0 + timedelta(seconds=7), 2: T0 + timedelta(seconds=65), 3: T0 + timedelta(seconds=5)}
    assert {job.attempts for job in jobs} == {1}
    # the short one is claimable again as soon as its lease ran out, the long one is not
    again = await store.claim_due(worker_id="w2", limit=10, lease_margin_seconds=5, now=T0 + timedelta(seconds=8))
    assert [(job.token_id, job.attempts, job.locked_by) for job in again] == [(1, 2, "w2"), (3, 2, "w2")]


async def test_settle_and_retry_only_touch_a_job_held_under_that_very_claim(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1))
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=T0)
    async with uow_factory() as uow:
        assert not await uow.jobs.hold(job.id, "w2", 1)  # another worker
        assert not await uow.jobs.hold(job.id, "w1", 2)  # another claim
        assert not await uow.jobs.settle(job.id, "w1", 2, status="done", error=None, now=T0)
        assert not await uow.jobs.retry_at(job.id, "w2", 1, run_at=at(1), error="x", now=T0)
        assert await uow.jobs.hold(job.id, "w1", 1)
        assert await uow.jobs.retry_at(job.id, "w1", 1, run_at=at(1), error="HTTP 503", now=T0)
        await uow.commit()
    rescheduled = await one_job(db_pool, job.id)
    assert (rescheduled.status, rescheduled.run_at, rescheduled.locked_by, rescheduled.last_error) == (
        "pending", at(1), None, "HTTP 503"
    )
    assert await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=T0) == []
    [second] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=at(1))
    async with uow_factory() as uow:
        assert await uow.jobs.settle(second.id, "w1", 2, status="failed", error="HTTP 400", now=at(1))
        await uow.commit()
    failed = await one_job(db_pool, job.id)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 2, "HTTP 400")


async def test_a_settlement_rolled_back_leaves_the_job_running(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1))
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=T0)
    async with uow_factory() as uow:
        assert await uow.jobs.settle(job.id, "w1", 1, status="done", error=None, now=T0)
        # no commit: as when the instance's compare-and-set fails
    assert (await one_job(db_pool, job.id)).status == "running"


async def test_a_held_job_is_skipped_by_claims_even_after_its_lease_ran_out(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1, timeout_ms=1000))
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=0, now=T0)
    late = T0 + timedelta(seconds=30)
    async with uow_factory() as uow:
        assert await uow.jobs.hold(job.id, "w1", 1)
        # while the feed-back transaction holds the row, another worker's claim passes it by
        assert await asyncio.wait_for(
            store.claim_due(worker_id="w2", limit=1, lease_margin_seconds=0, now=late), 5
        ) == []
        assert await uow.jobs.settle(job.id, "w1", 1, status="done", error=None, now=late)
        await uow.commit()
    assert await store.claim_due(worker_id="w2", limit=1, lease_margin_seconds=0, now=late) == []


async def test_a_claim_after_the_lease_ran_out_wins_over_the_late_worker(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1, timeout_ms=1000))
    store = PostgresJobStore(db_pool)
    [first] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=0, now=T0)
    [second] = await store.claim_due(worker_id="w2", limit=1, lease_margin_seconds=0, now=T0 + timedelta(seconds=2))
    assert (second.id, second.attempts) == (first.id, 2)
    async with uow_factory() as uow:
        assert not await uow.jobs.hold(first.id, "w1", 1)


async def test_release_hands_the_job_back_without_counting_the_claim(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1))
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=T0)
    assert not await store.release(job.id, "w2", 1, now=at(1))
    assert await store.release(job.id, "w1", 1, now=at(1))
    back = await one_job(db_pool, job.id)
    assert (back.status, back.attempts, back.run_at, back.locked_by) == ("pending", 0, at(1), None)


async def test_put_back_hands_a_held_job_back_for_later_without_counting_the_claim(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, ScheduleTimer(token_id=1, node_id="Wait", due_at=T0))
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=T0)
    async with uow_factory() as uow:
        assert not await uow.jobs.put_back(job.id, "w1", 2, run_at=at(5), now=T0)  # not its claim
        assert await uow.jobs.put_back(job.id, "w1", 1, run_at=at(5), now=T0)
        await uow.commit()
    back = await one_job(db_pool, job.id)
    assert (back.status, back.attempts, back.run_at, back.locked_by, back.lease_until) == (
        "pending", 0, at(5), None, None
    )
    assert await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=at(4)) == []
    [again] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=5, now=at(5))
    assert again.attempts == 1


async def test_a_later_job_of_the_same_kind_supersedes_an_earlier_one(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, call(1), ScheduleTimer(token_id=1, node_id="Wait", due_at=T0), call(2))
    ids = {(r["token_id"], r["kind"]): r["id"] for r in await db_pool.fetch("SELECT id, token_id, kind FROM jobs")}
    first_call, timer, other = ids[1, "callService"], ids[1, "scheduleTimer"], ids[2, "callService"]
    async with uow_factory() as uow:
        assert await uow.jobs.is_latest_for_token("acme", "i-1", 1, first_call)  # a timer is another kind
        assert await uow.jobs.is_latest_for_token("acme", "i-1", 1, timer)
        assert await uow.jobs.is_latest_for_token("acme", "i-1", 2, other)
        await uow.jobs.enqueue("acme", "i-1", [call(1)], T0)  # the token came back to a service task
        assert not await uow.jobs.is_latest_for_token("acme", "i-1", 1, first_call)
        assert await uow.jobs.is_latest_for_token("acme", "i-1", 1, timer)
        assert await uow.jobs.is_latest_for_token("acme", "i-2", 1, first_call)  # another instance's token


async def test_a_token_coming_back_to_the_same_task_gets_a_new_idempotency_key(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    for _ in range(3):  # three visits, each committed with the step that made it
        await enqueue(uow_factory, call(1))
    await enqueue(uow_factory, CallService(token_id=1, node_id="Score", endpoint="https://svc.test/x",
                                           attempt_group=2))
    await enqueue(uow_factory, call(2))
    keys = [row["idempotency_key"] for row in await db_pool.fetch("SELECT idempotency_key FROM jobs ORDER BY id")]
    assert keys == ["i-1:1:Score:1", "i-1:1:Score:1~2", "i-1:1:Score:1~3", "i-1:1:Score:2", "i-1:2:Score:1"]
