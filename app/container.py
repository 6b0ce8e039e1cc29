"""The composition root: the one punq container, and the storage the lifespan opens into it.

Plain objects (settings, clock, ids) are registered when the container is built. Async
resources (the embedded server, the pool, the HTTP client, the job workers) only exist inside
the lifespan: `open_storage`
creates them, registers them as instances, and pushes their shutdown onto the lifespan's
exit stack so they close in reverse order. Handlers never see the container.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg
import httpx
import punq

from app.lifecycle import ReadinessProbe
from domain.engine import Limits
from domain.transition import IdSource
from handlers.bus import Bus
from handlers.deps import Deps
from handlers.ports import Clock, StorageUnavailable, UnitOfWorkFactory
from infra.clock import SystemClock, monotonic_ms
from infra.database import Db, create_pool
from infra.embedded_pg import EmbeddedPostgres
from infra.housekeeping import Housekeeping
from infra.http_caller import HttpCaller, new_client
from infra.ids import UuidIds
from infra.job_store import PostgresJobStore
from infra.migrate import migrate
from infra.settings import Settings, mask_dsn
from infra.unit_of_work import PostgresUnitOfWorkFactory
from infra.worker import JobWorker, config_from

log = logging.getLogger("flowcore")


def build_container(settings: Settings) -> punq.Container:
    container = punq.Container()
    container.register(Settings, instance=settings)
    container.register(Clock, instance=SystemClock())
    container.register(IdSource, instance=UuidIds())
    return container


class PoolProbe:
    """Ready when a pooled connection answers a trivial query."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self) -> bool:
        try:
            async with asyncio.timeout(2):
                return bool(await self._pool.fetchval("SELECT 1") == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, StorageUnavailable):
            return False


async def start_database(settings: Settings, stack: AsyncExitStack) -> str:
    """The DSN to use: DATABASE_URL, or an embedded server started here and stopped on exit."""
    if settings.database_url:
        log.info("using PostgreSQL at %s", mask_dsn(settings.database_url))
        return settings.database_url
    log.info("starting embedded PostgreSQL in %s", settings.pgdata)
    server = EmbeddedPostgres(settings.data_dir)
    dsn = await asyncio.to_thread(server.start)
    stack.push_async_callback(asyncio.to_thread, server.stop)
    return dsn


async def apply_migrations(pool: asyncpg.Pool) -> list[int]:
    async with pool.acquire() as connection:
        applied = await migrate(Db(connection))
    log.info("migrations applied (%s)", ", ".join(f"{v:04d}" for v in applied) if applied else "up to date")
    return applied


async def open_storage(container: punq.Container, settings: Settings, stack: AsyncExitStack) -> None:
    """Database, pool, migrations, then the deps and bus built on them."""
    # Imported here so an app built around a caller's Bus (tests, embedding) needs none of it.
    from handlers.table import HANDLERS

    dsn = await start_database(settings, stack)
    pool = await create_pool(dsn, max_size=settings.pool_size)
    stack.push_async_callback(pool.close)
    await apply_migrations(pool)

    container.register(asyncpg.Pool, instance=pool)
    container.register(UnitOfWorkFactory, instance=PostgresUnitOfWorkFactory(pool))
    container.register(ReadinessProbe, instance=PoolProbe(pool))
    deps = Deps(
        uow=container.resolve(UnitOfWorkFactory),
        clock=container.resolve(Clock),
        ids=container.resolve(IdSource),
        limits=Limits(max_steps=settings.max_steps),
        stopwatch=monotonic_ms,
    )
    container.register(Deps, instance=deps)
    container.register(Bus, instance=Bus(HANDLERS, deps))
    if settings.workers > 0:
        start_job_workers(container, settings, stack)


def start_job_workers(container: punq.Container, settings: Settings, stack: AsyncExitStack) -> JobWorker:
    """The HTTP client and the worker pool (which also runs housekeeping); on exit the pool stops
    first (its jobs handed back), then the client closes, and only then the database pool
    registered before them."""
    client = new_client()
    stack.push_async_callback(client.aclose)
    caller = HttpCaller(client, settings.connectors)
    container.register(httpx.AsyncClient, instance=client)
    container.register(HttpCaller, instance=caller)
    pool = container.resolve(asyncpg.Pool)
    housekeeping = Housekeeping(pool, job_retention=timedelta(hours=settings.job_retention_hours))
    worker = JobWorker(
        container.resolve(Deps), PostgresJobStore(pool), caller, config_from(settings), housekeeping=housekeeping
    )
    worker.start()
    stack.push_async_callback(worker.stop)
    container.register(JobWorker, instance=worker)
    return worker
