from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from infra import sql
from infra.database import Db, connect, dsn_with_database
from infra.migrate import Migration, MigrationError, bundled_migrations, migrate

_numbers = itertools.count(1)

TABLES = {"process_definitions", "process_instances", "instance_history", "jobs", "idempotency_keys"}


@pytest_asyncio.fixture(loop_scope="session")
async def empty_dsn(pg_dsn: str, pg_admin: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"migrate_test_{next(_numbers)}"
    await pg_admin.execute(sql.drop_database(name))
    await pg_admin.execute(sql.create_database(name))
    try:
        yield dsn_with_database(pg_dsn, name)
    finally:
        await pg_admin.execute(sql.drop_database(name))


async def tables(db: Db) -> set[str]:
    rows = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


def test_bundled_migrations_are_numbered_from_one() -> None:
    migrations = bundled_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"


async def test_migrate_applies_once_and_is_idempotent(empty_dsn: str) -> None:
    connection = await connect(empty_dsn)
    try:
        db = Db(connection)
        assert await migrate(db) == [m.version for m in bundled_migrations()]
        assert await migrate(db) == []
        assert TABLES | {"schema_migrations"} <= await tables(db)
    finally:
        await connection.close()


async def test_two_migrators_at_once_apply_each_migration_once(empty_dsn: str) -> None:
    first, second = await connect(empty_dsn), await connect(empty_dsn)
    try:
        results = await asyncio.gather(migrate(Db(first)), migrate(Db(second)))
        assert sorted(results, key=len) == [[], [m.version for m in bundled_migrations()]]
        recorded = await first.fetch("SELECT version FROM schema_migrations")
        assert len(recorded) == len(bundled_migrations())
    finally:
        await first.close()
        await second.close()


async def test_a_failing_migration_leaves_nothing_behind(empty_dsn: str) -> None:
    good = Migration(1, "a", "CREATE TABLE a (x int)")
    bad = Migration(2, "b", "CREATE TABLE b (x int); SELECT no_such_function()")
    connection = await connect(empty_dsn)
    try:
        db = Db(connection)
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(db, [good, bad])
        assert await tables(db) == {"a", "schema_migrations"}
        fixed = Migration(2, "b", "CREATE TABLE b (x int)")
        assert await migrate(db, [good, fixed]) == [2]
        assert await tables(db) == {"a", "b", "schema_migrations"}
    finally:
        await connection.close()


async def test_a_changed_or_unknown_migration_is_refused(empty_dsn: str) -> None:
    connection = await connect(empty_dsn)
    try:
        db = Db(connection)
        await migrate(db, [Migration(1, "a", "CREATE TABLE a (x int)"), Migration(2, "b", "CREATE TABLE b (x int)")])
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(
                db, [Migration(1, "a", "CREATE TABLE a (x bigint)"), Migration(2, "b", "CREATE TABLE b (x int)")]
            )
        with pytest.raises(MigrationError, match="newer than this flowcore"):
            await migrate(db, [Migration(1, "a", "CREATE TABLE a (x int)")])
        # the advisory lock was released every time: another session can still migrate
        other = await connect(empty_dsn)
        try:
            both = [Migration(1, "a", "CREATE TABLE a (x int)"), Migration(2, "b", "CREATE TABLE b (x int)")]
            assert await asyncio.wait_for(migrate(Db(other), both), 5) == []
        finally:
            await other.close()
    finally:
        await connection.close()
