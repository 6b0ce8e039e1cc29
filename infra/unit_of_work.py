"""One transaction on one pooled connection, with every repository bound to it."""

from __future__ import annotations

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
    """`async with uow:` begins; commit() commits; leaving the block without it rolls back."""

    definitions: DefinitionRepository
    instances: InstanceRepository
    history: HistoryRepository
    jobs: JobRepository
    idempotency: IdempotencyRepository

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._connection: asyncpg.Connection | None = None
        self._transaction: asyncpg.transaction.Transaction | None = None
        self._committed = False

    async def __aenter__(self) -> Self:
        if self._connection is not None:
            raise RuntimeError("a unit of work is entered once; ask the factory for a new one")
        with translated_errors():
            connection = await self._pool.acquire(timeout=self._acquire_timeout)
        try:
            transaction = connection.transaction()
            with translated_errors():
                await transaction.start()
        except BaseException:
            await self._pool.release(connection)
            raise
        self._connection, self._transaction = connection, transaction
        db = Db(connection)
        self.definitions = PostgresDefinitionRepository(db)
        self.instances = PostgresInstanceRepository(db)
        self.history = PostgresHistoryRepository(db)
        self.jobs = PostgresJobRepository(db)
        self.idempotency = PostgresIdempotencyRepository(db)
        return self

    async def commit(self) -> None:
        if self._transaction is None:
            raise RuntimeError("commit() outside `async with`")
        with translated_errors():
            await self._transaction.commit()
        self._committed = True

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, transaction = self._connection, self._transaction
        if connection is None or transaction is None:
            return
        self._transaction = None
        try:
            if not self._committed:
                try:
                    await transaction.rollback()
                except Exception:
                    # The connection is broken or confused: never hand it back with a transaction open.
                    connection.terminate()
        finally:
            await self._pool.release(connection)


class PostgresUnitOfWorkFactory:
    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float = 10.0) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def __call__(self) -> PostgresUnitOfWork:
        return PostgresUnitOfWork(self._pool, acquire_timeout=self._acquire_timeout)
