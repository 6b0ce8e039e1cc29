"""Process definitions in PostgreSQL: one row per deployed version of a process key."""

from __future__ import annotations

import builtins
from typing import Any

import msgspec

from handlers.ports import DefinitionFilter, DefinitionRecord, NewDefinition, Page
from infra import sql
from infra.database import Db, Row
from infra.jsonb import to_jsonb

_counts_decoder = msgspec.json.Decoder(dict[str, int])
_metadata_decoder = msgspec.json.Decoder(dict[str, Any] | None)


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _record(row: Row) -> DefinitionRecord:
    metadata = row["metadata"]
    return DefinitionRecord(
        id=row["id"],
        tenant_id=row["tenant_id"],
        process_key=row["process_key"],
        name=row["name"],
        version=row["version"],
        bpmn_xml=row["bpmn_xml"],
        processes=list(row["processes"]),
        element_counts=_counts_decoder.decode(row["element_counts"]),
        description=row["description"],
        category=row["category"],
        is_active=row["is_active"],
        metadata=None if metadata is None else _metadata_decoder.decode(metadata),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class PostgresDefinitionRepository:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, new: NewDefinition) -> DefinitionRecord:
        # Concurrent deploys of one key queue on this lock, so max(version) + 1 is never taken twice.
        await self._db.execute(sql.LOCK_DEFINITION_KEY, new.tenant_id, new.process_key)
        row = await self._db.fetchrow(
            sql.INSERT_DEFINITION,
            new.tenant_id,
            new.process_key,
            new.name,
            new.description,
            new.category,
            new.is_active,
            new.bpmn_xml,
            new.processes,
            to_jsonb(new.element_counts),
            to_jsonb(new.metadata),
            new.created_at,
        )
        assert row is not None  # INSERT … RETURNING always yields the row
        return _record(row)

    async def get(self, tenant_id: str, definition_id: int) -> DefinitionRecord | None:
        row = await self._db.fetchrow(sql.GET_DEFINITION, tenant_id, definition_id)
        return None if row is None else _record(row)

    async def latest(self, tenant_id: str, process_key: str) -> DefinitionRecord | None:
        row = await self._db.fetchrow(sql.LATEST_DEFINITION, tenant_id, process_key)
        return None if row is None else _record(row)

    async def by_version(self, tenant_id: str, process_key: str, version: int) -> DefinitionRecord | None:
        row = await self._db.fetchrow(sql.DEFINITION_BY_VERSION, tenant_id, process_key, version)
        return None if row is None else _record(row)

    async def find_process(self, tenant_id: str, process_id: str) -> DefinitionRecord | None:
        row = await self._db.fetchrow(sql.FIND_PROCESS, tenant_id, process_id)
        return None if row is None else _record(row)

    async def list(
        self, tenant_id: str, filt: DefinitionFilter, page: Page
    ) -> tuple[builtins.list[DefinitionRecord], int]:
        search = like_pattern(filt.search_text) if filt.search_text else None
        params = (tenant_id, search, filt.category, filt.is_active, filt.process_key)
        total: int = await self._db.fetchval(sql.COUNT_DEFINITIONS, *params)
        if total == 0 or page.offset >= total:
            return [], total
        query = sql.list_definitions(filt.sort_by, filt.sort_descending)
        rows = await self._db.fetch(query, *params, page.size, page.offset)
        return [_record(row) for row in rows], total

    async def update_meta(self, record: DefinitionRecord) -> None:
        await self._db.execute(
            sql.UPDATE_DEFINITION_META,
            record.tenant_id,
            record.id,
            record.name,
            record.description,
            record.category,
            record.is_active,
            to_jsonb(record.metadata),
            record.updated_at,
        )

    async def delete(self, tenant_id: str, definition_id: int) -> bool:
        status = await self._db.execute(sql.DELETE_DEFINITION, tenant_id, definition_id)
        return status == "DELETE 1"
