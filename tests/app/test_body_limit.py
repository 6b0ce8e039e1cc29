"""Bodies over the limit are refused with 413 without being read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message

from commands.instances import GetProcessInstanceState
from handlers.bus import Reply, RequestContext
from handlers.deps import Deps
from tests.app.harness import JSON, TENANT, build, envelope, running

LIMIT = 1000


async def _ok(cmd: Any, ctx: RequestContext, deps: Deps) -> Reply:
    return Reply("ok")


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/core/cmd",
        "raw_path": b"/api/core/cmd",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"flowcore.test"),
            (b"content-type", b"application/json"),
            (b"x-tenant-id", TENANT.encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }


class Chunks:
    """A receive() that hands out `count` chunks and records how many were taken."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.taken = chunk, count, 0

    async def __call__(self) -> Message:
        self.taken += 1
        more = self.taken < self.count
        return {"type": "http.request", "body": self.chunk, "more_body": more}


Answer = tuple[int, dict[bytes, bytes], dict[str, Any]]


async def _call(app: Any, scope: dict[str, Any], receive: Any) -> Answer:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    app = build({GetProcessInstanceState: _ok}, max_body_bytes=LIMIT).app
    receive = Chunks(b"x" * 100, 50)
    async with app.router.lifespan_context(app):
        status, headers, body = await _call(app, _scope([(b"content-length", b"5000")]), receive)
    assert receive.taken == 0
    assert status == 413
    assert body["statusCode"] == "40"
    assert body["errorCode"] == "PAYLOAD_TOO_LARGE"
    assert body["requestId"] == headers[b"x-request-id"].decode()


async def test_a_chunked_body_is_cut_off_once_it_crosses_the_limit() -> None:
    app = build({GetProcessInstanceState: _ok}, max_body_bytes=LIMIT).app
    receive = Chunks(b"x" * 400, 50)  # 20 000 bytes on offer
    async with app.router.lifespan_context(app):
        status, _, body = await _call(app, _scope([(b"transfer-encoding", b"chunked")]), receive)
    assert status == 413
    assert body["statusCode"] == "40"
    assert receive.taken == 3  # 1200 bytes: the third chunk crossed the limit, nothing more was read


async def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    raw = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g"})).encode()
    padded = raw[:-1] + b" " * (LIMIT - len(raw)) + b"}"
    assert len(padded) == LIMIT
    async with running(build({GetProcessInstanceState: _ok}, max_body_bytes=LIMIT).app) as client:
        response = await client.post("/api/core/cmd", content=padded, headers=JSON)
    assert response.json()["statusCode"] == "00"


@pytest.mark.parametrize("chunked", [False, True])
async def test_over_the_limit_through_a_client(chunked: bool) -> None:
    raw = json.dumps(envelope("GetProcessInstanceStateCommand", {"instanceGuid": "g" * 2000})).encode()

    async def stream() -> Any:
        for start in range(0, len(raw), 256):
            yield raw[start : start + 256]

    async with running(build({GetProcessInstanceState: _ok}, max_body_bytes=LIMIT).app) as client:
        response = await client.post("/api/core/cmd", content=stream() if chunked else raw, headers=JSON)
    assert response.status_code == 413
    assert response.json()["statusCode"] == "40"
