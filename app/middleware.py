"""Pure ASGI middleware: request id and access log, the serving gate, the body size limit.

Order, outermost first: RequestLog (so every answer, even a refusal, carries the request id
and is logged), ServingGate, BodyLimit, then the router.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.asgi import header, send_json
from app.codec import encode_failure
from app.errors import BodyTooLarge, NotServing, failure_for
from app.lifecycle import Lifecycle
from app.logging import request_id_var
from infra.ids import request_id as new_request_id

access_log = logging.getLogger("flowcore.access")
error_log = logging.getLogger("flowcore.error")

SCOPE_KEY = "flowcore.request"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,100}")


@dataclass(slots=True)
class RequestInfo:
    """Filled in as the request is understood; read by the access log when it ends."""

    request_id: str
    cmd: str | None = None
    tenant: str | None = None


def request_info(scope: Scope) -> RequestInfo:
    info = scope.get(SCOPE_KEY)
    if not isinstance(info, RequestInfo):
        info = RequestInfo(request_id=new_request_id())
        scope[SCOPE_KEY] = info
    return info


async def send_failure(send: Send, exc: BaseException, request_id: str) -> None:
    failure = failure_for(exc, request_id)
    await send_json(send, failure.http_status, encode_failure(failure, request_id))


class RequestLog:
    """Assigns the request id, echoes it, logs one access line per request, last-resort 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = header(scope, b"x-request-id")
        request_id = offered if offered and _SANE_REQUEST_ID.fullmatch(offered) else new_request_id()
        info = RequestInfo(request_id=request_id)
        scope[SCOPE_KEY] = info
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            error_log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if status:
                raise
            await send_failure(send_with_id, exc, request_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            access_log.info(
                "%s %s cmd=%s tenant=%s status=%d ms=%.1f rid=%s",
                scope["method"], scope["path"], info.cmd or "-", info.tenant or "-", status, elapsed_ms,
                request_id,
            )
            request_id_var.reset(token)


class ServingGate:
    """Answers "53" while starting or shutting down; liveness stays answerable throughout."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle, *, always_open: frozenset[str]) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.always_open = always_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.lifecycle.serving and scope["path"] not in self.always_open:
            await send_failure(send, NotServing(), request_info(scope).request_id)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses bodies over `limit` bytes without reading them.

    A declared Content-Length over the limit is answered at once; a chunked body is counted
    as it streams and the read that crosses the limit raises, so the rest is never consumed.
    The connection is deliberately not closed: the server discards the unread rest of the body
    without buffering it, while closing a socket with unread data would reset the connection and
    the client could lose the answer.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_info(scope).request_id
        declared = header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            await send_failure(send, BodyTooLarge(self.limit), request_id)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await send_failure(send, exc, request_id)
