"""The audit log of an instance: append-only rows numbered by the instance's history_seq."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.state import HistoryEvent
from handlers.ports import Page
from infra import sql
from infra.database import Db, Row
from infra.jsonb import to_jsonb

_data_decoder = msgspec.json.Decoder(dict[str, Any] | None)


def _event(row: Row) -> HistoryEvent:
    data = row["data"]
    return HistoryEvent(
        seq=row["seq"],
        event_type=row["event_type"],
        at=row["at"],
        node_id=row["node_id"],
        node_name=row["node_name"],
        node_type=row["node_type"],
        token_id=row["token_id"],
        actor=row["actor"],
        comment=row["comment"],
        data=None if data is None else _data_decoder.decode(data),
    )


class PostgresHistoryRepository:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def append(self, tenant_id: str, instance_guid: str, events: list[HistoryEvent]) -> None:
        if not events:
            return
        await self._db.executemany(
            sql.INSERT_HISTORY_EVENT,
            [
                (
                    tenant_id,
                    instance_guid,
                    e.seq,
                    e.event_type,
                    e.at,
                    e.node_id,
                    e.node_name,
                    e.node_type,
                    e.token_id,
                    e.actor,
                    e.comment,
                    to_jsonb(e.data),
                )
                for e in events
            ],
        )

    async def page(self, tenant_id: str, instance_guid: str, page: Page) -> tuple[list[HistoryEvent], int]:
        total: int = await self._db.fetchval(sql.COUNT_HISTORY, tenant_id, instance_guid)
        if total == 0 or page.offset >= total:
            return [], total
        rows = await self._db.fetch(sql.PAGE_HISTORY, tenant_id, instance_guid, page.size, page.offset)
        return [_event(row) for row in rows], total
