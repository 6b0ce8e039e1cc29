"""First responses to commands sent with an Idempotency-Key, honoured for 24 hours."""

from __future__ import annotations

from datetime import datetime, timedelta

from handlers.ports import StoredResponse
from infra import sql
from infra.database import Db

LIFETIME = timedelta(hours=24)


class PostgresIdempotencyRepository:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def get(self, tenant_id: str, key: str, now: datetime) -> StoredResponse | None:
        row = await self._db.fetchrow(sql.GET_IDEMPOTENT_RESPONSE, tenant_id, key, now - LIFETIME)
        if row is None:
            return None
        return StoredResponse(
            request_hash=row["request_hash"],
            status_code=row["status_code"],
            http_status=row["http_status"],
            body=bytes(row["body"]),
        )

    async def put(self, tenant_id: str, key: str, response: StoredResponse, now: datetime) -> None:
        """Keeps the first live response under a key; an expired one is replaced."""
        await self._db.execute(
            sql.PUT_IDEMPOTENT_RESPONSE,
            tenant_id,
            key,
            response.request_hash,
            response.status_code,
            response.http_status,
            response.body,
            now,
            now - LIFETIME,
        )

    async def prune(self, now: datetime, *, limit: int = 1000) -> int:
        """Housekeeping: delete up to `limit` expired entries of any tenant; returns how many went
        (infra.housekeeping calls it again while whole batches go)."""
        status = await self._db.execute(sql.PRUNE_IDEMPOTENCY_KEYS, now - LIFETIME, limit)
        return int(status.rsplit(" ", 1)[-1])
