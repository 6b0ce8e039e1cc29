"""Process instances in PostgreSQL: the state as jsonb plus the columns lists filter on."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import msgspec

from domain.state import HistoryEvent, decode_state, encode_state
from handlers.ports import DuplicateInstance, InstanceFilter, InstanceRecord, LatestGuard, Page, StaleDefinition
from infra import sql
from infra.database import Db, Row
from infra.jsonb import any_from_jsonb, to_jsonb

_events_encoder = msgspec.json.Encoder()


def _record(row: Row) -> InstanceRecord:
    return InstanceRecord(
        instance_guid=row["instance_guid"],
        tenant_id=row["tenant_id"],
        definition_id=row["definition_id"],
        process_key=row["process_key"],
        process_name=row["process_name"],
        definition_version=row["definition_version"],
        status=row["status"],
        execution_mode=row["execution_mode"],
        state=decode_state(row["state"]),
        row_version=row["row_version"],
        business_key=row["business_key"],
        context_type=row["context_type"],
        context_id=any_from_jsonb(row["context_id"]),
        correlation_key=row["correlation_key"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
    )


class PostgresInstanceRepository:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, record: InstanceRecord) -> None:
        await self.add_with_history(record, [])

    async def add_with_history(
        self, record: InstanceRecord, events: Sequence[HistoryEvent], *, latest: LatestGuard | None = None
    ) -> None:
        # The events travel as one JSON array the statement unpacks: one round trip for all of them.
        inserted = await self._db.fetchval(
            sql.INSERT_INSTANCE_WITH_HISTORY,
            record.tenant_id,
            record.instance_guid,
            record.definition_id,
            record.process_key,
            record.process_name,
            record.definition_version,
            record.status,
            record.execution_mode,
            record.business_key,
            record.correlation_key,
            record.context_type,
            to_jsonb(record.context_id),
            encode_state(record.state),
            record.row_version,
            record.started_at,
            record.updated_at,
            record.completed_at,
            _events_encoder.encode(events),
            None if latest is None else latest.definition_id,
            None if latest is None else latest.process_key,
            None if latest is None else latest.name,
        )
        if inserted == -1:
            raise StaleDefinition(record.definition_id)
        if inserted != 1:
            raise DuplicateInstance(record.instance_guid)

    async def get(self, tenant_id: str, instance_guid: str, *, for_update: bool = False) -> InstanceRecord | None:
        query = sql.GET_INSTANCE_FOR_UPDATE if for_update else sql.GET_INSTANCE
        row = await self._db.fetchrow(query, tenant_id, instance_guid)
        return None if row is None else _record(row)

    async def save(self, record: InstanceRecord, expected_row_version: int) -> bool:
        status = await self._db.execute(
            sql.SAVE_INSTANCE,
            record.tenant_id,
            record.instance_guid,
            expected_row_version,
            record.definition_id,
            record.process_key,
            record.process_name,
            record.definition_version,
            record.status,
            record.execution_mode,
            record.business_key,
            record.correlation_key,
            record.context_type,
            to_jsonb(record.context_id),
            encode_state(record.state),
            record.started_at,
            record.updated_at,
            record.completed_at,
        )
        return status == "UPDATE 1"

    async def list(self, tenant_id: str, filt: InstanceFilter, page: Page) -> tuple[builtins.list[InstanceRecord], int]:
        params = (
            tenant_id,
            filt.process_key,
            filt.status,
            filt.business_key,
            filt.execution_mode,
            filt.started_after,
            filt.started_before,
        )
        total: int = await self._db.fetchval(sql.COUNT_INSTANCES, *params)
        if total == 0 or page.offset >= total:
            return [], total
        rows = await self._db.fetch(sql.LIST_INSTANCES, *params, page.size, page.offset)
        return [_record(row) for row in rows], total

    async def count_active(self, tenant_id: str, definition_id: int) -> int:
        count: int = await self._db.fetchval(sql.COUNT_LIVE_INSTANCES_OF_DEFINITION, tenant_id, definition_id)
        return count

    async def active_for_definition(self, tenant_id: str, definition_id: int) -> Sequence[InstanceRecord]:
        rows = await self._db.fetch(sql.LIVE_INSTANCES_OF_DEFINITION_FOR_UPDATE, tenant_id, definition_id)
        return [_record(row) for row in rows]

    async def by_correlation_key(self, tenant_id: str, correlation_key: str) -> InstanceRecord | None:
        row = await self._db.fetchrow(sql.INSTANCE_BY_CORRELATION_KEY, tenant_id, correlation_key)
        return None if row is None else _record(row)
