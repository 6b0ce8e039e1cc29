"""Connections to PostgreSQL, and the one place asyncpg's errors become flowcore's.

jsonb travels as raw JSON bytes in both directions (msgspec encodes and decodes them where
the shape is known), so no dict is ever built just to be serialised again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from handlers.ports import StorageUnavailable

Row = Mapping[str, Any]

_JSONB_BINARY_VERSION = b"\x01"  # jsonb's binary wire format is a version byte, then the JSON text

# Driver errors after which the same command may well succeed: the server is unreachable,
# restarting, out of connections, or chose this transaction as a serialization/deadlock victim.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, socket missing, TimeoutError
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.exceptions.ClientCannotConnectError,
    asyncpg.exceptions.ConnectionRejectionError,
    # A backend killed mid-exchange can leave the protocol in a state it reports this way.
    asyncpg.exceptions.InternalClientError,
)


class UniqueViolation(Exception):
    """A unique constraint refused a row; repositories turn this into their own meaning."""

    def __init__(self, constraint: str | None) -> None:
        super().__init__(f"unique constraint {constraint!r} violated")
        self.constraint = constraint


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(exc.constraint_name) from exc
    except _UNAVAILABLE as exc:
        raise StorageUnavailable(f"database unavailable: {type(exc).__name__}: {exc}") from exc
    except asyncpg.InterfaceError as exc:
        # asyncpg reports a dropped connection or a closing pool as InterfaceError (a pooled
        # connection whose backend died is detached: "released back to the pool"); other
        # interface errors are programming mistakes and stay as they are.
        text = str(exc)
        if "closed" in text or "closing" in text or "released back to the pool" in text:
            raise StorageUnavailable(f"database unavailable: {exc}") from exc
        raise


class Db:
    """One connection whose calls raise flowcore's exceptions instead of the driver's.

    A unit of work's Db (`Db.on_demand`) has no connection until its first statement: only then
    does it take one from the pool and, while `begin_first` is set, open a transaction just
    before that statement. So a unit that sends nothing never touches the pool, and one that
    computes before it writes (a start runs the engine first) holds a connection only while it
    talks to the server, which keeps the pool from running dry under concurrent starts."""

    __slots__ = ("_pool", "_timeout", "begin_first", "connection", "open_transaction")

    def __init__(
        self, connection: asyncpg.Connection | None, *, pool: asyncpg.Pool | None = None,
        timeout: float | None = None,
    ) -> None:
        self.connection = connection
        self._pool = pool
        self._timeout = timeout
        self.begin_first = False
        self.open_transaction: asyncpg.transaction.Transaction | None = None

    @classmethod
    def on_demand(cls, pool: asyncpg.Pool, timeout: float | None) -> Db:
        db = cls(None, pool=pool, timeout=timeout)
        db.begin_first = True
        return db

    async def ready(self) -> asyncpg.Connection:
        """The connection, taken from the pool and in a transaction as this Db was told."""
        connection = self.connection
        if connection is None:
            pool, self._pool = self._pool, None  # taken once: a statement racing this one fails, takes no second
            if pool is None:
                raise RuntimeError("this Db has no connection: one statement at a time, inside its unit of work")
            connection = self.connection = await acquire(pool, self._timeout)
        if self.begin_first:
            transaction = connection.transaction()
            with translated_errors():
                await transaction.start()
            self.begin_first = False
            self.open_transaction = transaction
        return connection

    def detach(self) -> asyncpg.Connection | None:
        """Ends this Db's use: no later statement can take a connection. Returns the one it holds."""
        connection, self.connection, self._pool = self.connection, None, None
        return connection

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        connection = await self.ready()
        with translated_errors():
            async with connection.transaction():
                yield

    async def execute(self, query: str, *args: object) -> str:
        connection = self.connection
        if connection is None or self.begin_first:
            connection = await self.ready()
        with translated_errors():
            status: str = await connection.execute(query, *args)
            return status

    async def executemany(self, query: str, args: Iterable[Sequence[object]]) -> None:
        connection = self.connection
        if connection is None or self.begin_first:
            connection = await self.ready()
        with translated_errors():
            await connection.executemany(query, args)

    async def fetch(self, query: str, *args: object) -> list[Row]:
        connection = self.connection
        if connection is None or self.begin_first:
            connection = await self.ready()
        with translated_errors():
            rows: list[Row] = await connection.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: object) -> Row | None:
        connection = self.connection
        if connection is None or self.begin_first:
            connection = await self.ready()
        with translated_errors():
            row: Row | None = await connection.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: object) -> Any:
        connection = self.connection
        if connection is None or self.begin_first:
            connection = await self.ready()
        with translated_errors():
            return await connection.fetchval(query, *args)


async def acquire(pool: asyncpg.Pool, timeout: float | None) -> asyncpg.Connection:
    """A pooled connection, waiting at most `timeout` seconds for one to come free.

    The timeout is only armed when no connection is idle: then taking one cannot wait (asyncpg's
    pool hands out a connected holder before one that would have to connect), and arming it (a
    timer and a task lookup) would cost about a tenth of a start's storage work."""
    with translated_errors():
        if pool.get_idle_size() > 0:
            return await pool.acquire()
        return await pool.acquire(timeout=timeout)


@contextlib.asynccontextmanager
async def acquired(pool: asyncpg.Pool, *, timeout: float | None = None) -> AsyncIterator[Db]:
    """A pooled connection for a few autocommit statements."""
    connection = await acquire(pool, timeout)
    try:
        yield Db(connection)
    finally:
        await pool.release(connection)


def _encode_jsonb(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return _JSONB_BINARY_VERSION + raw


def _decode_jsonb(data: bytes) -> bytes:
    return data[1:]


async def configure_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no type hints
    """A pool connection released without asyncpg's reset query, one round trip per release less.

    That query undoes session state: advisory locks, cursors, LISTEN and SET. flowcore leaves none
    on a connection it hands back: it sets nothing per session and opens no cursors, migrations
    unlock their advisory lock explicitly, and the job listener unlistens before release (or
    terminates the connection when it cannot). An open transaction is still rolled back on release.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(dsn: str, *, max_size: int = 10, min_size: int = 1) -> asyncpg.Pool:
    with translated_errors():
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=min(min_size, max_size),
            max_size=max_size,
            init=configure_connection,
            connection_class=PooledConnection,
        )
        return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single configured connection (migrations, maintenance, tests)."""
    with translated_errors():
        connection: asyncpg.Connection = await asyncpg.connect(dsn)
        await configure_connection(connection)
        return connection


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))
