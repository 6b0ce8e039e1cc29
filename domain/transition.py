"""What every engine call returns: the new state, the history it wrote, the effects to carry out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import msgspec

from domain.state import HistoryEvent, InstanceState


class IdSource(Protocol):
    """Hands out fresh unique ids; the caller decides how (uuid4 in production, a counter in tests)."""

    def new_id(self) -> str: ...


class Effect(msgspec.Struct, kw_only=True, rename="camel", tag_field="type", tag=True):
    """Work the engine wants done outside the transaction that saves the new state."""

    token_id: int
    node_id: str


class CallService(Effect, tag="callService"):
    """Perform an HTTP call for a service task and feed the outcome back as a new step."""

    endpoint: str | None = None
    connector_key: str | None = None
    method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    payload: Any = None
    timeout_ms: int = 30000
    retries: int = 3
    retry_backoff_ms: int = 1000
    attempt_group: int = 1  # bumped by RetryFailedTask: part of the idempotency key
    bpmn_error_field: str | None = None


class ScheduleTimer(Effect, tag="scheduleTimer"):
    due_at: datetime


class CancelJobs(Effect, tag="cancelJobs"):
    """Jobs of this token are no longer wanted (token moved on, instance cancelled)."""


class Transition(msgspec.Struct, kw_only=True):
    state: InstanceState
    events: list[HistoryEvent]
    effects: list[Effect]
