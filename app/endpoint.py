"""POST /api/core/cmd: read bytes, decode, dispatch, encode. It never looks at which command it carries."""

from __future__ import annotations

import logging
import re

from starlette.types import Receive, Scope, Send

from app.asgi import headers, send_json
from app.codec import command_class, decode_data, decode_envelope, encode_failure, encode_success
from app.errors import BodyTooLarge, MalformedRequest, failure_for, is_internal
from app.idempotency import KeyLocks, Outcome, run_once
from app.lifecycle import Lifecycle
from app.middleware import request_info
from commands.base import Command
from commands.registry import QUERIES
from handlers.bus import Bus, RequestContext
from handlers.errors import VersionConflict

log = logging.getLogger("flowcore.endpoint")

_TENANT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")


class CommandNotSupported(MalformedRequest):
    code = "UNSUPPORTED_COMMAND"


def _check_content_type(value: str | None) -> None:
    media, _, params = (value or "").partition(";")
    charset = ""
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip('"').lower()
    if media.strip().lower() != "application/json" or charset not in ("", "utf-8", "utf8"):
        raise MalformedRequest(
            "Content-Type must be application/json (UTF-8).", details={"header": "Content-Type"}
        )


_CONTENT_TYPE, _TENANT_ID, _IDEMPOTENCY = b"content-type", b"x-tenant-id", b"idempotency-key"
_READ = frozenset({_CONTENT_TYPE, _TENANT_ID, _IDEMPOTENCY})


class ClientGone(Exception):
    """The client disconnected before sending the whole body: there is nobody to answer."""


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _tenant(given: dict[bytes, str]) -> str:
    tenant = given.get(_TENANT_ID)
    if not tenant:
        raise MalformedRequest("Header X-Tenant-ID is required.", details={"header": "X-Tenant-ID"})
    if not _TENANT.fullmatch(tenant):
        raise MalformedRequest(
            "Header X-Tenant-ID must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'.",
            details={"header": "X-Tenant-ID"},
        )
    return tenant


def _idempotency_key(given: dict[bytes, str]) -> str | None:
    key = given.get(_IDEMPOTENCY)
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise MalformedRequest(
            "Header Idempotency-Key must be 1-200 visible ASCII characters.",
            details={"header": "Idempotency-Key"},
        )
    return key


def _failure(exc: Exception, request_id: str, cmd: str | None) -> Outcome:
    if is_internal(exc):
        log.error("command %s failed", cmd or "-", exc_info=exc)
    failure = failure_for(exc, request_id)
    body = encode_failure(failure, request_id)
    return Outcome(failure.status_code, failure.http_status, body, retryable=isinstance(exc, VersionConflict))


async def _execute(bus: Bus, command: Command, ctx: RequestContext, cmd: str) -> Outcome:
    try:
        reply = await bus.dispatch(command, ctx)
        return Outcome("00", 200, encode_success(reply.message, reply.data))
    except Exception as exc:
        return _failure(exc, ctx.request_id, cmd)


class CommandEndpoint:
    """An ASGI app: Starlette routes POSTs to it as they are (see app.asgi for why)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._locks = KeyLocks()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = request_info(scope)
        try:
            bus = self._lifecycle.current().bus
            given = headers(scope, _READ)
            _check_content_type(given.get(_CONTENT_TYPE))
            body = await _body(receive)
            envelope = decode_envelope(body)
            cls = command_class(envelope.cmd)
            info.cmd = envelope.cmd  # only once known: client text never reaches the log unchecked
            info.tenant = tenant = _tenant(given)
            key = _idempotency_key(given)
            command = decode_data(cls, envelope.data)
            if not bus.handles(cls):
                raise CommandNotSupported(f"Command '{envelope.cmd}' is not supported yet.")
            ctx = RequestContext(tenant_id=tenant, request_id=info.request_id, idempotency_key=key)
            cmd = envelope.cmd
            if key is None or cls in QUERIES:
                outcome = await _execute(bus, command, ctx, cmd)
            else:
                outcome = await run_once(
                    uow=bus.deps.uow, clock=bus.deps.clock, locks=self._locks, tenant_id=tenant, key=key,
                    body=body, execute=lambda: _execute(bus, command, ctx, cmd),
                )
        except ClientGone:
            return  # the access line shows status 0: nothing was answered
        except BodyTooLarge:
            raise  # answered by the body limit middleware, which owns that refusal
        except Exception as exc:
            outcome = _failure(exc, info.request_id, info.cmd)
        await send_json(send, outcome.http_status, outcome.body)
