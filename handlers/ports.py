"""What handlers need from the outside world, as Protocols. infra implements them; tests fake them.

Every repository call takes the tenant first: there is no way to ask for a row without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec

from domain.state import HistoryEvent, InstanceState
from domain.transition import Effect


class DefinitionRecord(msgspec.Struct, kw_only=True):
    id: int
    tenant_id: str
    process_key: str
    name: str
    version: int
    bpmn_xml: str
    processes: list[str]
    element_counts: dict[str, int]
    description: str | None = None
    category: str | None = None
    is_active: bool = True
    metadata: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime


class NewDefinition(msgspec.Struct, kw_only=True):
    """A definition to store; the repository assigns id and the next version for its key."""

    tenant_id: str
    process_key: str
    name: str
    bpmn_xml: str
    processes: list[str]
    element_counts: dict[str, int]
    description: str | None = None
    category: str | None = None
    is_active: bool = True
    metadata: dict[str, Any] | None = None
    created_at: datetime


class DefinitionFilter(msgspec.Struct, kw_only=True):
    search_text: str | None = None
    category: str | None = None
    is_active: bool | None = None
    process_key: str | None = None
    sort_by: str = "createdAt"  # one of: createdAt, updatedAt, name, processKey, version
    sort_descending: bool = True


class InstanceRecord(msgspec.Struct, kw_only=True):
    instance_guid: str
    tenant_id: str
    definition_id: int
    process_key: str
    process_name: str
    definition_version: int
    status: str
    execution_mode: str
    state: InstanceState
    row_version: int  # optimistic concurrency guard, bumped on every save
    business_key: str | None = None
    context_type: str | None = None
    context_id: Any = None
    correlation_key: str | None = None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


class LatestGuard(msgspec.Struct, frozen=True, kw_only=True):
    """A definition taken as the latest version of `process_key` without reading it again: a write
    guarded by it happens only if it still is, active and still named `name`."""

    process_key: str
    definition_id: int
    name: str


class InstanceFilter(msgspec.Struct, kw_only=True):
    process_key: str | None = None
    status: str | None = None
    business_key: str | None = None
    execution_mode: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None


class Page(msgspec.Struct, kw_only=True):
    number: int = 1
    size: int = 20

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


class StoredResponse(msgspec.Struct, kw_only=True):
    """The first answer to a command sent with an Idempotency-Key."""

    request_hash: str
    status_code: str
    http_status: int
    body: bytes


class DefinitionRepository(Protocol):
    async def add(self, new: NewDefinition) -> DefinitionRecord: ...
    async def get(self, tenant_id: str, definition_id: int) -> DefinitionRecord | None: ...
    async def latest(self, tenant_id: str, process_key: str) -> DefinitionRecord | None: ...
    async def by_version(self, tenant_id: str, process_key: str, version: int) -> DefinitionRecord | None: ...
    async def find_process(self, tenant_id: str, process_id: str) -> DefinitionRecord | None:
        """Latest active definition whose document holds an executable process with this id."""
        ...
    async def list(self, tenant_id: str, filt: DefinitionFilter, page: Page) -> tuple[list[DefinitionRecord], int]: ...
    async def update_meta(self, record: DefinitionRecord) -> None:
        """Store name/description/category/isActive/metadata changes of an existing version."""
        ...
    async def delete(self, tenant_id: str, definition_id: int) -> bool: ...


class InstanceRepository(Protocol):
    async def add(self, record: InstanceRecord) -> None:
        """Insert a new instance; raises DuplicateInstance if the guid exists for the tenant."""
        ...
    async def add_with_history(
        self, record: InstanceRecord, events: Sequence[HistoryEvent], *, latest: LatestGuard | None = None
    ) -> None:
        """Insert a new instance together with its first history events, as one atomic write;
        raises DuplicateInstance, having written nothing, if the guid exists for the tenant. With
        `latest`, writes only if that still describes the latest version of its process key, else
        raises StaleDefinition having written nothing."""
        ...
    async def get(self, tenant_id: str, instance_guid: str, *, for_update: bool = False) -> InstanceRecord | None: ...
    async def save(self, record: InstanceRecord, expected_row_version: int) -> bool:
        """Compare-and-set: store only if the row still has expected_row_version (then bumped by 1)."""
        ...
    async def list(self, tenant_id: str, filt: InstanceFilter, page: Page) -> tuple[list[InstanceRecord], int]: ...
    async def count_active(self, tenant_id: str, definition_id: int) -> int: ...
    async def active_for_definition(self, tenant_id: str, definition_id: int) -> Sequence[InstanceRecord]:
        """The definition's running, waiting and failed instances, locked for update."""
        ...
    async def by_correlation_key(self, tenant_id: str, correlation_key: str) -> InstanceRecord | None: ...


class HistoryRepository(Protocol):
    async def append(self, tenant_id: str, instance_guid: str, events: list[HistoryEvent]) -> None: ...
    async def page(self, tenant_id: str, instance_guid: str, page: Page) -> tuple[list[HistoryEvent], int]:
        """Newest first."""
        ...


class JobRepository(Protocol):
    async def enqueue(self, tenant_id: str, instance_guid: str, effects: list[Effect], now: datetime) -> None: ...

    # The worker's side. A job is "held" by the worker that claimed it, for that claim (attempt)
    # only; each call below changes nothing unless the caller still holds the job.
    async def hold(self, job_id: int, worker_id: str, attempt: int) -> bool:
        """Lock the job row for this transaction if `worker_id` still holds it for `attempt`."""
        ...
    async def is_latest_for_token(self, tenant_id: str, instance_guid: str, token_id: int, job_id: int) -> bool:
        """True when no later job of the same kind was created for the token (it has not moved on and
        come back to wait on another)."""
        ...
    async def settle(
        self, job_id: int, worker_id: str, attempt: int, *, status: str, error: str | None, now: datetime
    ) -> bool:
        """End the held job: status is "done", "failed" or "cancelled"."""
        ...
    async def retry_at(
        self, job_id: int, worker_id: str, attempt: int, *, run_at: datetime, error: str, now: datetime
    ) -> bool:
        """Hand the held job back to the queue, due again at `run_at`."""
        ...
    async def put_back(self, job_id: int, worker_id: str, attempt: int, *, run_at: datetime, now: datetime) -> bool:
        """Hand the held job back to the queue, due at `run_at`, without this claim counting as an
        attempt (it was made too early)."""
        ...


class IdempotencyRepository(Protocol):
    async def get(self, tenant_id: str, key: str, now: datetime) -> StoredResponse | None:
        """The stored response if the key was used within its lifetime (24 h)."""
        ...
    async def put(self, tenant_id: str, key: str, response: StoredResponse, now: datetime) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without commit() rolls back."""

    definitions: DefinitionRepository
    instances: InstanceRepository
    history: HistoryRepository
    jobs: JobRepository
    idempotency: IdempotencyRepository

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    async def commit(self) -> None: ...
    def autocommit(self) -> None:
        """Before the unit's first statement: let each statement commit on its own until begin().
        Only for a unit that reads and then makes at most one write, a single repository call that
        is atomic by itself (e.g. InstanceRepository.add_with_history); it saves BEGIN and COMMIT."""
        ...
    async def begin(self) -> None:
        """Open the transaction now if it is not open yet: every later write commits together."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class DuplicateInstance(Exception):
    """An instance with this guid already exists for the tenant."""


class StaleDefinition(Exception):
    """A write guarded by a LatestGuard found another latest version (or none, or an inactive or
    renamed one) and wrote nothing."""


class StorageUnavailable(Exception):
    """The database cannot be reached; the command is safe to retry."""
