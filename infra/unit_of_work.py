"""One transaction on one pooled connection, with every repository bound to it."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

import asyncpg

from handlers.ports import (
    DefinitionRepository,
    HistoryRepository,
    IdempotencyRepository,
    InstanceRepository,
    JobRepository,
)
from infra.database import Db, translated_errors
from infra.definition_repository import PostgresDefinitionRepository
from infra.history_repository import PostgresHistoryRepository
from infra.idempotency_repository import PostgresIdempotencyRepository
from infra.instance_repository import PostgresInstanceRepository
from infra.job_repository import PostgresJobRepository


class PostgresUnitOfWork:
    """`async with uow:` binds the repositories; the first statement takes a pooled connection
    and begins the transaction (or begin() does); commit() commits; leaving the block without
    it rolls back; leaving it gives the connection back.

    autocommit(), before any statement, leaves each statement to commit on its own until begin():
    for a unit that reads and then makes one write that is atomic by itself."""

    definitions: DefinitionRepository
    instances: InstanceRepository
    history: HistoryRepository
    jobs: JobRepository
    idempotency: IdempotencyRepository

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._db: Db | None = None
        self._entered_once = False
        self._committed = False

    async def __aenter__(self) -> Self:
        if self._entered_once:
            raise RuntimeError("a unit of work is entered once; ask the factory for a new one")
        self._entered_once = True
        self._db = db = Db.on_demand(self._pool, self._acquire_timeout)
        self.definitions = PostgresDefinitionRepository(db)
        self.instances = PostgresInstanceRepository(db)
        self.history = PostgresHistoryRepository(db)
        self.jobs = PostgresJobRepository(db)
        self.idempotency = PostgresIdempotencyRepository(db)
        return self

    def _entered(self) -> Db:
        if self._db is None:
            raise RuntimeError("a unit of work is used inside `async with`")
        return self._db

    def autocommit(self) -> None:
        db = self._entered()
        if not db.begin_first:
            raise RuntimeError("autocommit() comes before the unit's first statement")
        db.begin_first = False

    async def begin(self) -> None:
        db = self._entered()
        if db.open_transaction is None:
            db.begin_first = True
            await db.ready()

    async def commit(self) -> None:
        db = self._entered()
        db.begin_first = False  # nothing was sent yet: nothing to commit, and nothing to begin now
        if db.open_transaction is not None:
            with translated_errors():
                await db.open_transaction.commit()
        self._committed = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        transaction = db.open_transaction
        connection = db.detach()  # repositories kept past the block can no longer take a connection
        if connection is None:
            return
        try:
            if transaction is not None and not self._committed:
                try:
                    await transaction.rollback()
                except Exception:
                    # The connection is broken or confused: never hand it back with a transaction open.
                    # (One the server closed is already back in the pool, detached: nothing to end.)
                    with contextlib.suppress(asyncpg.InterfaceError):
                        connection.terminate()
        finally:
            # No release timeout: the rollback is done above and the reset query is empty
            # (PooledConnection), so release sends nothing that could hang, and a timeout
            # would arm a timer per unit of work.
            await self._pool.release(connection)


class PostgresUnitOfWorkFactory:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def __call__(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self._pool, acquire_timeout=self._acquire_timeout)
