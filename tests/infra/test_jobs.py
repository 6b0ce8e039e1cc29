"""The job queue on real PostgreSQL: storing jobs, and the worker's claim (CLAIM_DUE_JOBS) with
its leases, SKIP LOCKED and attempts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from domain.transition import CallService, CancelJobs, Effect, ScheduleTimer
from infra.database import Db
from infra.job_repository import TIMER_MAX_ATTEMPTS
from infra.job_store import Job, PostgresJobStore, claim_due_jobs, job_from_row
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import T0, at


def call(token: int, node: str = "charge", **changes: object) -> CallService:
    return CallService(token_id=token, node_id=node, endpoint="https://pay.example/charge", **changes)  # type: ignore[arg-type]


async def enqueue(
    uow_factory: PostgresUnitOfWorkFactory, effects: list[Effect], *, tenant: str = "acme", guid: str = "i-1"
) -> None:
    async with uow_factory() as uow:
        await uow.jobs.enqueue(tenant, guid, effects, T0)
        await uow.commit()


async def all_jobs(pool: asyncpg.Pool) -> list[Job]:
    return [job_from_row(row) for row in await pool.fetch("SELECT * FROM jobs ORDER BY id")]


async def one_job(pool: asyncpg.Pool, job_id: int) -> Job:
    return job_from_row(await pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id))


async def test_enqueue_stores_one_job_per_effect(uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool) -> None:
    service = call(1, payload={"amount": 10}, headers={"X-Trace": "t"}, retries=2, attempt_group=3)
    timer = ScheduleTimer(token_id=2, node_id="wait", due_at=at(90))
    await enqueue(uow_factory, [service, timer])
    first, second = await all_jobs(db_pool)
    assert (first.kind, first.effect, first.status, first.run_at, first.max_attempts, first.attempts) == (
        "callService",
        service,
        "pending",
        T0,
        3,
        0,
    )
    assert first.idempotency_key == "i-1:1:charge:3"
    assert (first.tenant_id, first.instance_guid, first.token_id, first.node_id) == (
        "acme",
        "i-1",
        1,
        "charge",
    )
    assert (second.kind, second.effect, second.run_at, second.max_attempts) == (
        "scheduleTimer",
        timer,
        at(90),
        TIMER_MAX_ATTEMPTS,
    )
    assert second.idempotency_key != first.idempotency_key


async def test_cancel_jobs_cancels_pending_jobs_of_that_token_only(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, [call(1), call(2)])
    await enqueue(uow_factory, [call(1)], guid="i-2")
    await enqueue(uow_factory, [call(1)], tenant="globex")
    # the token moves on: its old job goes, the job of its new position (same batch) stays
    await enqueue(uow_factory, [call(1, node="notify"), CancelJobs(token_id=1, node_id="charge")])
    jobs = await all_jobs(db_pool)
    assert [(j.tenant_id, j.instance_guid, j.token_id, j.node_id, j.status) for j in jobs] == [
        ("acme", "i-1", 1, "charge", "cancelled"),
        ("acme", "i-1", 2, "charge", "pending"),
        ("acme", "i-2", 1, "charge", "pending"),
        ("globex", "i-1", 1, "charge", "pending"),
        ("acme", "i-1", 1, "notify", "pending"),
    ]


async def test_cancel_leaves_a_running_job_to_its_worker(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, [call(1)])
    store = PostgresJobStore(db_pool)
    [claimed] = await store.claim_due(worker_id="w1", limit=5, lease_margin_seconds=30, now=T0)
    await enqueue(uow_factory, [CancelJobs(token_id=1, node_id="charge")])
    assert (await one_job(db_pool, claimed.id)).status == "running"


async def test_claim_takes_due_jobs_in_order_under_a_lease(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(
        uow_factory,
        [
            ScheduleTimer(token_id=1, node_id="t", due_at=at(10)),
            ScheduleTimer(token_id=2, node_id="t", due_at=at(5)),
            ScheduleTimer(token_id=3, node_id="t", due_at=at(60)),
        ],
    )
    store = PostgresJobStore(db_pool)
    assert await store.claim_due(worker_id="w1", limit=10, lease_margin_seconds=3600, now=at(1)) == []
    claimed = await store.claim_due(worker_id="w1", limit=10, lease_margin_seconds=3600, now=at(20))
    assert [j.token_id for j in claimed] == [2, 1]
    for job in claimed:
        assert (job.status, job.attempts, job.locked_by) == ("running", 1, "w1")
        assert job.lease_until == at(20) + timedelta(seconds=3600)  # a timer has no call timeout
    assert await store.claim_due(worker_id="w2", limit=10, lease_margin_seconds=3600, now=at(20)) == []
    [late] = await store.claim_due(worker_id="w2", limit=10, lease_margin_seconds=3600, now=at(61))
    assert late.token_id == 3


async def test_claimers_in_open_transactions_skip_each_others_rows(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, [call(n) for n in range(10)])
    async with db_pool.acquire() as first, db_pool.acquire() as second:
        first_tx, second_tx = first.transaction(), second.transaction()
        await first_tx.start()
        await second_tx.start()
        mine = await claim_due_jobs(Db(first), worker_id="a", limit=4, lease_margin_seconds=30, now=T0)
        # the first claimer still holds its row locks; without SKIP LOCKED this would wait
        theirs = await asyncio.wait_for(
            claim_due_jobs(Db(second), worker_id="b", limit=4, lease_margin_seconds=30, now=T0), 5
        )
        await first_tx.commit()
        await second_tx.commit()
    assert len(mine) == 4 and len(theirs) == 4
    assert not {j.id for j in mine} & {j.id for j in theirs}


async def test_concurrent_claimers_never_get_the_same_job(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, [call(n) for n in range(60)])
    store = PostgresJobStore(db_pool)

    async def drain(worker: str) -> list[int]:
        got: list[int] = []
        while batch := await store.claim_due(worker_id=worker, limit=3, lease_margin_seconds=30, now=T0):
            got.extend(j.id for j in batch)
        return got

    results = await asyncio.gather(*(drain(f"w{n}") for n in range(4)))
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == 60
    assert len(set(claimed)) == 60
    assert sum(1 for result in results if result) >= 2  # the claimers really interleaved
    assert {job.attempts for job in await all_jobs(db_pool)} == {1}


async def test_an_expired_lease_is_claimed_again_as_an_attempt_and_the_late_worker_loses(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, [call(1, timeout_ms=20_000)])
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="slow", limit=1, lease_margin_seconds=10, now=T0)
    assert job.lease_until == T0 + timedelta(seconds=30)  # its call's 20 s, plus the margin
    early = T0 + timedelta(seconds=29)
    assert await store.claim_due(worker_id="other", limit=1, lease_margin_seconds=10, now=early) == []
    [again] = await store.claim_due(
        worker_id="other", limit=1, lease_margin_seconds=10, now=T0 + timedelta(seconds=31)
    )
    assert (again.id, again.attempts, again.locked_by) == (job.id, 2, "other")
    done_at = T0 + timedelta(seconds=40)
    # whatever the late worker does with its claim changes nothing
    assert await store.fail(job.id, "slow", 1, error="late", now=done_at) is False
    assert await store.extend_lease(job.id, "slow", 1, seconds=60, now=done_at) is False
    assert await store.release(job.id, "slow", 1, now=done_at) is False
    async with uow_factory() as uow:
        assert await uow.jobs.hold(job.id, "slow", 1) is False
        assert await uow.jobs.settle(job.id, "slow", 1, status="done", error=None, now=done_at) is False
        assert await uow.jobs.settle(job.id, "other", 2, status="done", error=None, now=done_at) is True
        await uow.commit()
    final = await one_job(db_pool, job.id)
    assert (final.status, final.attempts, final.locked_by, final.lease_until) == ("done", 2, "other", None)


async def test_extending_the_lease_keeps_the_job_and_never_shortens_it(
    uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool
) -> None:
    await enqueue(uow_factory, [call(1, timeout_ms=20_000)])
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=10, now=T0)  # until T0 + 30 s
    later = T0 + timedelta(seconds=20)
    assert await store.extend_lease(job.id, "w2", 1, seconds=60, now=later) is False  # not its job
    assert await store.extend_lease(job.id, "w1", 2, seconds=60, now=later) is False  # not its claim
    assert await store.extend_lease(job.id, "w1", 1, seconds=60, now=later) is True
    assert (await one_job(db_pool, job.id)).lease_until == T0 + timedelta(seconds=80)
    assert await store.extend_lease(job.id, "w1", 1, seconds=1, now=later) is True
    assert (await one_job(db_pool, job.id)).lease_until == T0 + timedelta(seconds=80)
    assert await store.claim_due(worker_id="w2", limit=1, lease_margin_seconds=10, now=T0 + timedelta(seconds=79)) == []
    [again] = await store.claim_due(worker_id="w2", limit=1, lease_margin_seconds=10, now=T0 + timedelta(seconds=81))
    assert again.attempts == 2


async def test_fail_ends_a_held_job_alone(uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool) -> None:
    await enqueue(uow_factory, [call(1)])
    store = PostgresJobStore(db_pool)
    [job] = await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=10, now=T0)
    assert await store.fail(job.id, "w1", 1, error="attempts spent", now=at(1)) is True
    failed = await one_job(db_pool, job.id)
    assert (failed.status, failed.last_error, failed.lease_until) == ("failed", "attempts spent", None)
    assert await store.claim_due(worker_id="w1", limit=1, lease_margin_seconds=10, now=at(60 * 24)) == []
