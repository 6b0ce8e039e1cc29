from __future__ import annotations

import asyncio

import asyncpg
import pytest

from handlers.ports import StorageUnavailable, StoredResponse
from infra.database import Db, UniqueViolation, create_pool
from infra.job_store import PostgresJobStore
from infra.unit_of_work import PostgresUnitOfWorkFactory
from tests.infra.records import T0, new_definition


async def test_leaving_without_commit_rolls_back(uow_factory: PostgresUnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        added = await uow.definitions.add(new_definition())
        assert await uow.definitions.get("acme", added.id) == added  # visible inside its own transaction
    async with uow_factory() as uow:
        assert await uow.definitions.get("acme", added.id) is None
        assert await uow.definitions.latest("acme", "loan") is None


async def test_an_exception_rolls_back_and_propagates(uow_factory: PostgresUnitOfWorkFactory) -> None:
    with pytest.raises(LookupError):
        async with uow_factory() as uow:
            await uow.history.append("acme", "i-1", [])
            await uow.idempotency.put("acme", "k", _response(), T0)
            raise LookupError("handler refused")
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "k", T0) is None


async def test_commit_makes_every_repository_write_durable_together(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    async with uow_factory() as uow:
        added = await uow.definitions.add(new_definition())
        await uow.idempotency.put("acme", "k", _response(), T0)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.definitions.get("acme", added.id) == added
        assert await uow.idempotency.get("acme", "k", T0) == _response()


async def test_in_autocommit_each_statement_commits_on_its_own_until_begin(
    uow_factory: PostgresUnitOfWorkFactory,
) -> None:
    async with uow_factory() as uow:
        uow.autocommit()
        await uow.idempotency.put("acme", "alone", _response(), T0)
        await uow.begin()
        await uow.idempotency.put("acme", "together-1", _response(), T0)
        await uow.idempotency.put("acme", "together-2", _response(), T0)
        # no commit: what came after begin() is rolled back, the write before it stays
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "alone", T0) == _response()
        assert await uow.idempotency.get("acme", "together-1", T0) is None
        assert await uow.idempotency.get("acme", "together-2", T0) is None


async def test_autocommit_is_refused_once_the_transaction_has_begun(uow_factory: PostgresUnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        await uow.definitions.latest("acme", "loan")
        with pytest.raises(RuntimeError):
            uow.autocommit()
        await uow.idempotency.put("acme", "k", _response(), T0)
    async with uow_factory() as uow:
        assert await uow.idempotency.get("acme", "k", T0) is None


async def test_connections_go_back_to_the_pool(uow_factory: PostgresUnitOfWorkFactory, db_pool: asyncpg.Pool) -> None:
    for n in range(db_pool.get_max_size() * 3):
        if n % 2:
            async with uow_factory() as uow:
                await uow.definitions.latest("acme", "loan")
                await uow.commit()
        else:
            with pytest.raises(RuntimeError):
                async with uow_factory() as uow:
                    raise RuntimeError
        async with uow_factory() as uow:  # sends nothing, so it never opens a transaction
            await uow.commit()
        async with uow_factory() as uow:
            uow.autocommit()
            await uow.definitions.latest("acme", "loan")
    assert db_pool.get_idle_size() == db_pool.get_size()


async def test_a_unit_of_work_is_entered_once(uow_factory: PostgresUnitOfWorkFactory) -> None:
    uow = uow_factory()
    async with uow:
        with pytest.raises(RuntimeError):
            await uow.__aenter__()


async def test_unreachable_server_is_storage_unavailable(tmp_path: object) -> None:
    with pytest.raises(StorageUnavailable):
        await create_pool(f"postgresql://postgres@/postgres?host={tmp_path}", max_size=1)


async def test_a_dropped_connection_is_storage_unavailable_and_the_pool_recovers(
    db_dsn: str, pg_admin: asyncpg.Connection
) -> None:
    pool = await create_pool(db_dsn, max_size=1)
    try:
        factory = PostgresUnitOfWorkFactory(pool)
        backend_pid = await pool.fetchval("SELECT pg_backend_pid()")  # the pool's only connection
        with pytest.raises(StorageUnavailable):
            async with factory() as uow:
                await uow.definitions.latest("acme", "loan")  # the unit now holds that connection
                # terminate waits for the backend to exit, so the next query meets a dead connection
                await pg_admin.execute("SELECT pg_terminate_backend($1, 5000)", backend_pid)
                await uow.definitions.latest("acme", "loan")
        async with factory() as uow:
            assert await uow.definitions.latest("acme", "loan") is None
    finally:
        await pool.close()


async def test_unique_violations_are_translated(db_pool: asyncpg.Pool) -> None:
    insert = "INSERT INTO idempotency_keys VALUES ('acme', 'k', 'h', '00', 200, '', now())"
    async with db_pool.acquire() as connection:
        db = Db(connection)
        await db.execute(insert)
        with pytest.raises(UniqueViolation) as raised:
            await db.execute(insert)
    assert raised.value.constraint == "idempotency_keys_pkey"


async def test_release_leaves_no_transaction_and_no_listener_behind(db_dsn: str) -> None:
    # Released connections skip asyncpg's reset query; what it would undo must be undone anyway.
    pool = await create_pool(db_dsn, max_size=1)
    try:
        connection = await pool.acquire()
        await connection.execute("BEGIN")
        await connection.execute("INSERT INTO idempotency_keys VALUES ('acme', 'k', 'h', '00', 200, '', now())")
        await pool.release(connection)
        async with PostgresJobStore(pool).listening(lambda: None):
            with pytest.raises(TimeoutError):  # the pool's one connection is the listener's
                await pool.acquire(timeout=0.1)
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT count(*) FROM idempotency_keys") == 0
            assert await connection.fetch("SELECT pg_listening_channels()") == []
    finally:
        await pool.close()


def _response() -> StoredResponse:
    return StoredResponse(request_hash="h", status_code="00", http_status=200, body=b"{}")


async def test_a_unit_of_work_waits_for_a_busy_pool_only_as_long_as_its_timeout(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, max_size=1)
    try:
        factory = PostgresUnitOfWorkFactory(pool, acquire_timeout=0.2)
        async with factory() as idle_pool_unit:  # the pool's one connection is idle: taken at once
            assert await idle_pool_unit.definitions.latest("acme", "none") is None
            with pytest.raises(StorageUnavailable):  # now it is held: the next unit gives up
                async with factory() as starved:
                    await starved.definitions.latest("acme", "none")
        async with factory() as again:  # and it came back
            assert await again.definitions.latest("acme", "none") is None
    finally:
        await pool.close()


async def test_a_unit_takes_its_connection_at_its_first_statement_and_gives_it_back(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, max_size=1)
    try:
        factory = PostgresUnitOfWorkFactory(pool, acquire_timeout=0.2)
        async with factory(), factory() as other:
            # Entered but silent (a start running its engine): the pool's one connection stays free.
            assert pool.get_idle_size() == 1
            await other.idempotency.put("acme", "k", _response(), T0)
            await other.commit()
            assert pool.get_idle_size() == 0  # `other` holds it until it leaves
        assert pool.get_idle_size() == 1
        async with factory() as reader:
            assert await reader.idempotency.get("acme", "k", T0) == _response()
    finally:
        await pool.close()


async def test_a_unit_refuses_a_second_connection_and_any_statement_after_its_block(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, max_size=3)
    try:
        factory = PostgresUnitOfWorkFactory(pool, acquire_timeout=5)
        held = await pool.acquire()  # none idle now: the unit's first statement waits while it connects
        async with factory() as uow:
            results = await asyncio.gather(
                uow.definitions.latest("acme", "a"), uow.definitions.latest("acme", "b"), return_exceptions=True
            )
            assert any(isinstance(r, (RuntimeError, asyncpg.InterfaceError)) for r in results)
            assert pool.get_size() - pool.get_idle_size() == 2  # `held` and the unit's one: no second for it
        await pool.release(held)
        async with factory() as silent:
            kept = silent.definitions
        with pytest.raises(RuntimeError):
            await kept.latest("acme", "a")
        assert pool.get_size() - pool.get_idle_size() == 0  # nothing left held
    finally:
        pool.terminate()  # not close(): that would wait forever for a leaked connection
