"""Idempotency-Key: a repeated state-changing command returns its first answer and runs nothing.

The key is scoped to the tenant and lives 24 h (the repository enforces the lifetime). The
request is identified by a digest of its exact body bytes, so the same key with a different
body is refused rather than silently answered with someone else's result. Only definitive
answers are stored: "50" and "53" say nothing about whether a retry would succeed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from app.errors import IdempotencyKeyReused
from handlers.ports import Clock, StoredResponse, UnitOfWorkFactory

log = logging.getLogger("flowcore.idempotency")

_NOT_DEFINITIVE = frozenset({"50", "53"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """An encoded answer, ready to send or to store."""

    status_code: str
    http_status: int
    body: bytes
    retryable: bool = False  # a lost race: the same command may well succeed, so never replay it


def request_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class KeyLocks:
    """Serialises requests that share a (tenant, key) within this process.

    Without it two copies of one request arriving together would both find nothing stored
    and both run. Entries are dropped when nobody holds or waits for them.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, tenant_id: str, key: str) -> AsyncIterator[None]:
        ident = (tenant_id, key)
        lock, users = self._locks.get(ident, (asyncio.Lock(), 0))
        self._locks[ident] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[ident]
            if users == 1:
                del self._locks[ident]
            else:
                self._locks[ident] = (lock, users - 1)


async def run_once(
    *,
    uow: UnitOfWorkFactory,
    clock: Clock,
    locks: KeyLocks,
    tenant_id: str,
    key: str,
    body: bytes,
    execute: Callable[[], Awaitable[Outcome]],
) -> Outcome:
    digest = request_digest(body)
    async with locks.hold(tenant_id, key):
        async with uow() as unit:
            stored = await unit.idempotency.get(tenant_id, key, clock.now())
        if stored is not None:
            if stored.request_hash != digest:
                raise IdempotencyKeyReused()
            return Outcome(stored.status_code, stored.http_status, stored.body)

        outcome = await execute()
        if outcome.retryable or outcome.status_code in _NOT_DEFINITIVE:
            return outcome
        response = StoredResponse(
            request_hash=digest, status_code=outcome.status_code, http_status=outcome.http_status,
            body=outcome.body,
        )
        try:
            async with uow() as unit:
                await unit.idempotency.put(tenant_id, key, response, clock.now())
                await unit.commit()
        except Exception:
            # The command has already taken effect; failing now would invite the client to run
            # it again. Answer truthfully and leave the key unrecorded.
            log.warning("could not record the Idempotency-Key answer for tenant %s", tenant_id, exc_info=True)
        return outcome
