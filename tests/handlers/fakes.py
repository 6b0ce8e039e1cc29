"""In-memory implementations of the handler ports: a committed store plus a per-unit staging copy."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

import msgspec

from domain.state import HistoryEvent, InstanceStatus
from domain.transition import CallService, CancelJobs, Effect, ScheduleTimer
from handlers.ports import (
    DefinitionFilter,
    DefinitionRecord,
    DuplicateInstance,
    InstanceFilter,
    InstanceRecord,
    LatestGuard,
    NewDefinition,
    Page,
    StaleDefinition,
    StoredResponse,
)

ACTIVE = {InstanceStatus.RUNNING.value, InstanceStatus.WAITING.value, InstanceStatus.ERROR.value}


@dataclass
class FakeJobRow:
    """A row of the job queue, as much of it as the worker's feed-back needs."""

    id: int
    tenant_id: str
    instance_guid: str
    token_id: int
    node_id: str
    kind: str
    effect: Effect
    max_attempts: int
    status: str = "pending"
    attempts: int = 0
    locked_by: str | None = None
    run_at: datetime | None = None
    last_error: str | None = None


@dataclass
class Store:
    definitions: dict[int, DefinitionRecord] = field(default_factory=dict)
    instances: dict[tuple[str, str], InstanceRecord] = field(default_factory=dict)
    history: dict[tuple[str, str], list[HistoryEvent]] = field(default_factory=dict)
    jobs: list[tuple[str, str, Effect]] = field(default_factory=list)
    job_rows: dict[int, FakeJobRow] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], tuple[StoredResponse, datetime]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    commits: int = 0


class FakeDefinitions:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def add(self, new: NewDefinition) -> DefinitionRecord:
        versions = [d.version for d in self.s.definitions.values()
                    if d.tenant_id == new.tenant_id and d.process_key == new.process_key]
        record = DefinitionRecord(id=next(self.s.ids), version=max(versions, default=0) + 1,
                                  updated_at=new.created_at, **msgspec.structs.asdict(new))
        self.s.definitions[record.id] = record
        return record

    async def get(self, tenant_id: str, definition_id: int) -> DefinitionRecord | None:
        found = self.s.definitions.get(definition_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def latest(self, tenant_id: str, process_key: str) -> DefinitionRecord | None:
        matches = [d for d in self.s.definitions.values() if d.tenant_id == tenant_id and d.process_key == process_key]
        return max(matches, key=lambda d: d.version, default=None)

    async def by_version(self, tenant_id: str, process_key: str, version: int) -> DefinitionRecord | None:
        return next((d for d in self.s.definitions.values() if d.tenant_id == tenant_id
                     and d.process_key == process_key and d.version == version), None)

    async def find_process(self, tenant_id: str, process_id: str) -> DefinitionRecord | None:
        matches = [d for d in self.s.definitions.values()
                   if d.tenant_id == tenant_id and d.is_active and process_id in d.processes]
        return max(matches, key=lambda d: d.id, default=None)

    async def list(self, tenant_id: str, filt: DefinitionFilter, page: Page) -> tuple[list[DefinitionRecord], int]:
        rows = [d for d in self.s.definitions.values() if d.tenant_id == tenant_id]
        if filt.search_text:
            rows = [d for d in rows if filt.search_text.lower() in (d.name + d.process_key).lower()]
        if filt.category is not None:
            rows = [d for d in rows if d.category == filt.category]
        if filt.is_active is not None:
            rows = [d for d in rows if d.is_active == filt.is_active]
        rows.sort(key=lambda d: d.id, reverse=filt.sort_descending)
        return rows[page.offset: page.offset + page.size], len(rows)

    async def update_meta(self, record: DefinitionRecord) -> None:
        self.s.definitions[record.id] = record

    async def delete(self, tenant_id: str, definition_id: int) -> bool:
        return self.s.definitions.pop(definition_id, None) is not None


class FakeInstances:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def add(self, record: InstanceRecord) -> None:
        key = (record.tenant_id, record.instance_guid)
        if key in self.s.instances:
            raise DuplicateInstance(record.instance_guid)
        self.s.instances[key] = record

    async def add_with_history(
        self, record: InstanceRecord, events: Sequence[HistoryEvent], *, latest: LatestGuard | None = None
    ) -> None:
        if latest is not None:
            current = await FakeDefinitions(self.s).latest(record.tenant_id, latest.process_key)
            if (current is None or current.id != latest.definition_id or not current.is_active
                    or current.name != latest.name):
                raise StaleDefinition(latest.definition_id)
        await self.add(record)
        if events:
            self.s.history.setdefault((record.tenant_id, record.instance_guid), []).extend(events)

    async def get(self, tenant_id: str, instance_guid: str, *, for_update: bool = False) -> InstanceRecord | None:
        return self.s.instances.get((tenant_id, instance_guid))

    async def save(self, record: InstanceRecord, expected_row_version: int) -> bool:
        key = (record.tenant_id, record.instance_guid)
        current = self.s.instances.get(key)
        if current is None or current.row_version != expected_row_version:
            return False
        self.s.instances[key] = msgspec.structs.replace(record, row_version=expected_row_version + 1)
        return True

    async def list(self, tenant_id: str, filt: InstanceFilter, page: Page) -> tuple[list[InstanceRecord], int]:
        rows = [r for (t, _), r in self.s.instances.items() if t == tenant_id]
        for name in ("process_key", "status", "business_key", "execution_mode"):
            wanted = getattr(filt, name)
            if wanted is not None:
                rows = [r for r in rows if getattr(r, name) == wanted]
        return rows[page.offset: page.offset + page.size], len(rows)

    async def count_active(self, tenant_id: str, definition_id: int) -> int:
        return sum(1 for (t, _), r in self.s.instances.items()
                   if t == tenant_id and r.definition_id == definition_id and r.status in ACTIVE)

    async def active_for_definition(self, tenant_id: str, definition_id: int) -> list[InstanceRecord]:
        return [r for (t, _), r in self.s.instances.items()
                if t == tenant_id and r.definition_id == definition_id and r.status in ACTIVE]

    async def by_correlation_key(self, tenant_id: str, correlation_key: str) -> InstanceRecord | None:
        return next((r for (t, _), r in self.s.instances.items()
                     if t == tenant_id and r.correlation_key == correlation_key), None)


class FakeHistory:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def append(self, tenant_id: str, instance_guid: str, events: list[HistoryEvent]) -> None:
        self.s.history.setdefault((tenant_id, instance_guid), []).extend(events)

    async def page(self, tenant_id: str, instance_guid: str, page: Page) -> tuple[list[HistoryEvent], int]:
        rows = sorted(self.s.history.get((tenant_id, instance_guid), []), key=lambda e: e.seq, reverse=True)
        return rows[page.offset: page.offset + page.size], len(rows)


class FakeJobs:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def enqueue(self, tenant_id: str, instance_guid: str, effects: list[Effect], now: datetime) -> None:
        self.s.jobs.extend((tenant_id, instance_guid, e) for e in effects)
        for effect in effects:
            if isinstance(effect, CancelJobs):
                for row in self.s.job_rows.values():
                    if (row.tenant_id, row.instance_guid, row.token_id, row.status) == (
                        tenant_id, instance_guid, effect.token_id, "pending"
                    ):
                        row.status = "cancelled"
        for effect in effects:
            if isinstance(effect, CallService | ScheduleTimer):
                job_id = max(self.s.job_rows, default=0) + 1
                self.s.job_rows[job_id] = FakeJobRow(
                    id=job_id, tenant_id=tenant_id, instance_guid=instance_guid, token_id=effect.token_id,
                    node_id=effect.node_id, kind="callService" if isinstance(effect, CallService) else "scheduleTimer",
                    effect=effect, max_attempts=effect.retries + 1 if isinstance(effect, CallService) else 3,
                    run_at=now if isinstance(effect, CallService) else effect.due_at,
                )

    def _held(self, job_id: int, worker_id: str, attempt: int) -> FakeJobRow | None:
        row = self.s.job_rows.get(job_id)
        if row is None or (row.status, row.locked_by, row.attempts) != ("running", worker_id, attempt):
            return None
        return row

    async def hold(self, job_id: int, worker_id: str, attempt: int) -> bool:
        return self._held(job_id, worker_id, attempt) is not None

    async def is_latest_for_token(self, tenant_id: str, instance_guid: str, token_id: int, job_id: int) -> bool:
        kind = self.s.job_rows[job_id].kind
        return not any(
            (r.tenant_id, r.instance_guid, r.token_id, r.kind) == (tenant_id, instance_guid, token_id, kind)
            and r.id > job_id
            for r in self.s.job_rows.values()
        )

    async def settle(
        self, job_id: int, worker_id: str, attempt: int, *, status: str, error: str | None, now: datetime
    ) -> bool:
        assert status in ("done", "failed", "cancelled"), status
        row = self._held(job_id, worker_id, attempt)
        if row is None:
            return False
        row.status, row.last_error = status, error or row.last_error
        return True

    async def retry_at(
        self, job_id: int, worker_id: str, attempt: int, *, run_at: datetime, error: str, now: datetime
    ) -> bool:
        row = self._held(job_id, worker_id, attempt)
        if row is None:
            return False
        row.status, row.locked_by, row.run_at, row.last_error = "pending", None, run_at, error
        return True

    async def put_back(self, job_id: int, worker_id: str, attempt: int, *, run_at: datetime, now: datetime) -> bool:
        row = self._held(job_id, worker_id, attempt)
        if row is None:
            return False
        row.status, row.locked_by, row.run_at, row.attempts = "pending", None, run_at, row.attempts - 1
        return True


class FakeIdempotency:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def get(self, tenant_id: str, key: str, now: datetime) -> StoredResponse | None:
        found = self.s.idempotency.get((tenant_id, key))
        if found is None or now - found[1] > timedelta(hours=24):
            return None
        return found[0]

    async def put(self, tenant_id: str, key: str, response: StoredResponse, now: datetime) -> None:
        self.s.idempotency[(tenant_id, key)] = (response, now)


class FakeUnitOfWork:
    """Works on a deep copy of the committed store; commit() publishes it, anything else discards it."""

    def __init__(self, committed: Store) -> None:
        self._committed = committed

    async def __aenter__(self) -> Self:
        self._staged = copy.deepcopy(self._committed)
        self.definitions = FakeDefinitions(self._staged)
        self.instances = FakeInstances(self._staged)
        self.history = FakeHistory(self._staged)
        self.jobs = FakeJobs(self._staged)
        self.idempotency = FakeIdempotency(self._staged)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._staged = Store()

    def autocommit(self) -> None:
        pass  # the callers make one write and commit at once, so staging until commit() is the same

    async def begin(self) -> None:
        pass

    async def commit(self) -> None:
        staged = self._staged
        staged.commits = self._committed.commits + 1
        self._committed.__dict__.update(staged.__dict__)


class FixedClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class CountingIds:
    def __init__(self) -> None:
        self._n = itertools.count(1)

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._n):012d}"
