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
from infra.database import Db, acquire, translated_errors
from infra.definition_repository import PostgresDefinitionRepository
from infra.history_repository import PostgresHistoryRepository
from infra.idempotency_repository import PostgresIdempotencyRepository
from infra.instance_repository import PostgresInstanceRepository
from infra.job_repository import PostgresJobRepository


class PostgresUnitOfWork:
    """`async with uow:` takes a connection; the transaction begins with the first statement (or
    begin()); commit() commits; leaving the block without it rolls back.

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
        self._connection: asyncpg.Connection | None = None
        self._db: Db | None = None
        self._transaction: asyncpg.transaction.Transaction | None = None
        self._committed = False

    async def __aenter__(self) -> Self:
        if self._connection is not None:
            raise RuntimeError("a unit of work is entered once; ask the factory for a new one")
        connection = await acquire(self._pool, self._acquire_timeout)
        transaction = connection.transaction()
        db = Db(connection)
        db.deferred = transaction  # BEGIN goes out with the first statement, not as a round trip of its own
        self._connection, self._db, self._transaction = connection, db, transaction
        self.definitions = PostgresDefinitionRepository(db)
        self.instances = PostgresInstanceRepository(db)
        self.history = PostgresHistoryRepository(db)
        self.jobs = PostgresJobRepository(db)
        self.idempotency = PostgresIdempotencyRepository(db)
        return self

    def _entered(self) -> Db:
        if self._db is None or self._connection is None:
            raise RuntimeError("a unit of work is used inside `async with`")
        return self._db

    def autocommit(self) -> None:
        db = self._entered()
        if db.deferred is None:
            raise RuntimeError("autocommit() comes before the unit's first statement")
        db.deferred = self._transaction = None

    async def begin(self) -> None:
        db = self._entered()
        if self._transaction is None:  # in autocommit until now
            assert self._connection is not None
            self._transaction = db.deferred = self._connection.transaction()
        await db.start_deferred()

    async def commit(self) -> None:
        db = self._entered()
        if db.deferred is not None:
            db.deferred = self._transaction = None  # nothing was sent: nothing to commit
        elif self._transaction is not None:
            with translated_errors():
                await self._transaction.commit()
        self._committed = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, db, transaction = self._connection, self._db, self._transaction
        if connection is None or db is None:
            return
        self._db = self._transaction = None
        try:
            if transaction is not None and db.deferred is None and not self._committed:
                try:
                    await transaction.rollback()
                except Exception:
                    # The connection is broken or confused: never hand it back with a transaction open.
                    # (One the server closed is already back in the pool, detached: nothing to end.)
                    with contextlib.suppress(asyncpg.InterfaceError):
                        connection.terminate()
        finally:
            db.deferred = None
            await self._pool.release(connection)


class PostgresUnitOfWorkFactory:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def __call__(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self._pool, acquire_timeout=self._acquire_timeout)
