"""Database fixtures for every test folder.

- `pg_dsn` (session): DSN of the test server's maintenance database. The server is an embedded
  PostgreSQL in a temporary directory, or the one named by FLOWCORE_TEST_DATABASE_URL.
- `pg_admin` (session): an open connection to that maintenance database (create/drop databases).
- `pg_template` (session): a database migrated once; every test database is cloned from it.
- `db_dsn` (function): DSN of a fresh clone of the template, dropped after the test. Use it to
  give an app its DATABASE_URL.
- `db_pool` (function): a flowcore-configured asyncpg pool on that fresh database.
- `uow_factory` (function): a PostgresUnitOfWorkFactory on `db_pool`.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from infra import sql
from infra.database import Db, connect, create_pool, dsn_with_database
from infra.embedded_pg import EmbeddedPostgres
from infra.migrate import migrate
from infra.unit_of_work import PostgresUnitOfWorkFactory

_RUN = secrets.token_hex(4)  # keeps concurrent runs against one external server apart
_clone_numbers = itertools.count(1)


def _scratch_root() -> str | None:
    # Creating a database copies a few hundred files: ~20 ms on tmpfs, ~300 ms on this disk.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    external = os.environ.get("FLOWCORE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    data_dir = Path(tempfile.mkdtemp(prefix="flowcore-test-pg-", dir=_scratch_root()))
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_admin(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(pg_dsn)
    if not os.environ.get("FLOWCORE_TEST_DATABASE_URL"):
        for statement in sql.TEST_SERVER_SETTINGS:
            await connection.execute(statement)
    try:
        yield connection
    finally:
        await connection.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_template(pg_dsn: str, pg_admin: asyncpg.Connection) -> AsyncIterator[str]:
    name = f"flowcore_template_{_RUN}"
    await pg_admin.execute(sql.drop_database(name))
    await pg_admin.execute(sql.create_database(name))
    connection = await connect(dsn_with_database(pg_dsn, name))
    try:
        await migrate(Db(connection))
    finally:
        await connection.close()  # a template must have no sessions while it is cloned
    try:
        yield name
    finally:
        await pg_admin.execute(sql.drop_database(name))


@pytest_asyncio.fixture(loop_scope="session")
async def db_dsn(pg_dsn: str, pg_admin: asyncpg.Connection, pg_template: str) -> AsyncIterator[str]:
    name = f"t_{_RUN}_{next(_clone_numbers)}"
    await pg_admin.execute(sql.create_database(name, template=pg_template))
    try:
        yield dsn_with_database(pg_dsn, name)
    finally:
        await pg_admin.execute(sql.drop_database(name))


@pytest_asyncio.fixture(loop_scope="session")
async def db_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def uow_factory(db_pool: asyncpg.Pool) -> PostgresUnitOfWorkFactory:
    return PostgresUnitOfWorkFactory(db_pool)
