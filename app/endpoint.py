"""POST /api/core/cmd: read bytes, decode, dispatch, encode. It never looks at which command it carries."""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import Response

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


def _tenant(request: Request) -> str:
    tenant = request.headers.get("x-tenant-id")
    if not tenant:
        raise MalformedRequest("Header X-Tenant-ID is required.", details={"header": "X-Tenant-ID"})
    if not _TENANT.fullmatch(tenant):
        raise MalformedRequest(
            "Header X-Tenant-ID must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'.",
            details={"header": "X-Tenant-ID"},
        )
    return tenant


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
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
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._locks = KeyLocks()

    async def handle(self, request: Request) -> Response:
        info = request_info(request.scope)
        try:
            bus = self._lifecycle.current().bus
            _check_content_type(request.headers.get("content-type"))
            body = await request.body()
            envelope = decode_envelope(body)
            cls = command_class(envelope.cmd)
            info.cmd = envelope.cmd  # only once known: client text never reaches the log unchecked
            info.tenant = tenant = _tenant(request)
            key = _idempotency_key(request)
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
        except BodyTooLarge:
            raise  # answered by the body limit middleware, which owns that refusal
        except Exception as exc:
            outcome = _failure(exc, info.request_id, info.cmd)
        return Response(outcome.body, status_code=outcome.http_status, media_type="application/json")
