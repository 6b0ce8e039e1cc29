"""The ceiling the HTTP benchmark measures flowcore against: Starlette + asyncpg and nothing else.

`POST /api/core/cmd` does what every flowcore start has to do at the least, with no engine
logic: read and decode the `{cmd, data}` envelope, write one instance-like row (the request's
variables inside a jsonb state padded to the size of the state flowcore stores for the same
model) into flowcore's own `process_instances` table in its own transaction, commit, and answer
with a success envelope carrying that state. The database must already hold flowcore's schema
(`bench.http_bench` migrates it).

It is served the way `flowcore serve` serves flowcore: uvicorn, one worker, uvloop, httptools,
no access log, and an asyncpg pool of the same size with jsonb passed as raw bytes.

    .venv/bin/python -m bench.bare_app --database-url DSN [--port 8081] [--state-bytes 1500]
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

INSERT_INSTANCE = """
INSERT INTO process_instances (tenant_id, instance_guid, definition_id, process_key, process_name,
    definition_version, status, execution_mode, state, row_version, started_at, updated_at, completed_at)
VALUES ($1, $2, 1, $3, $3, 1, 'completed', 'Unsupervised', $4, 1, $5, $5, $5)"""


class Envelope(msgspec.Struct, frozen=True):
    cmd: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class Reply(msgspec.Struct, kw_only=True, rename="camel"):
    is_successful: bool
    message: str
    status_code: str
    data: Any


_decode = msgspec.json.Decoder(Envelope).decode
_encode = msgspec.json.Encoder().encode


def _encode_jsonb(value: bytes) -> bytes:
    return b"\x01" + value  # jsonb's binary format: a version byte, then the JSON text


def _decode_jsonb(data: bytes) -> bytes:
    return data[1:]


async def _configure(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )


def _failure(message: str, status_code: str, http_status: int) -> Response:
    body = _encode(Reply(is_successful=False, message=message, status_code=status_code, data=None))
    return Response(body, status_code=http_status, media_type="application/json")


def create_app(database_url: str, *, pool_size: int = 10, state_bytes: int = 0) -> Starlette:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size, init=_configure)
        try:
            yield
        finally:
            await pool.close()

    async def command(request: Request) -> Response:
        assert pool is not None
        tenant = request.headers.get("x-tenant-id")
        if not tenant:
            return _failure("Header X-Tenant-ID is required.", "40", 400)
        try:
            envelope = _decode(await request.body())
        except msgspec.DecodeError as exc:
            return _failure(f"Request body is not valid JSON: {exc}", "40", 400)
        process_key = envelope.data.get("processKey")
        if envelope.cmd != "StartProcessInstanceCommand" or not isinstance(process_key, str):
            return _failure("Only StartProcessInstanceCommand with a processKey is served here.", "40", 400)
        guid = uuid.uuid4().hex
        now = datetime.now(UTC)
        state = {"variables": envelope.data.get("variables") or {}, "padding": ""}
        # Pad the stored document to the size of flowcore's state for the same model.
        state["padding"] = "x" * max(0, state_bytes - len(_encode(state)))
        encoded_state = _encode(state)
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(INSERT_INSTANCE, tenant, guid, process_key, encoded_state, now)
        data = {"instanceGuid": guid, "processKey": process_key, "status": "completed",
                "state": msgspec.Raw(encoded_state)}
        body = _encode(Reply(is_successful=True, message="Process instance started successfully",
                             status_code="00", data=data))
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[Route("/api/core/cmd", command, methods=["POST"]), Route("/health", health, methods=["GET"])],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.bare_app", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True, help="a database holding flowcore's schema")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--pool-size", type=int, default=10, help="asyncpg pool size (flowcore's default: 10)")
    parser.add_argument("--state-bytes", type=int, default=0, help="pad the stored jsonb state to this size")
    args = parser.parse_args(argv)
    app = create_app(args.database_url, pool_size=args.pool_size, state_bytes=args.state_bytes)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="on",
        access_log=False, server_header=False, log_level="warning",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
