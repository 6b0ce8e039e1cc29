"""Instance state: the aggregate every command loads, changes and saves.

These Structs are persisted as JSON (camelCase, the same names clients read in `tokens[]`).
Evolution rule: a new field gets a default; a breaking change bumps SCHEMA_VERSION and adds a
pure upgrade function. The engine never mutates a state it was given: it works on a copy.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

SCHEMA_VERSION = 1


class InstanceStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    ERROR = "error"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ExecutionMode(StrEnum):
    UNSUPERVISED = "Unsupervised"
    SUPERVISED = "Supervised"


class TokenState(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    ON_HOLD = "ON_HOLD"
    ABORTED = "ABORTED"
    DISMISSED = "DISMISSED"
    EXPIRED = "EXPIRED"
    TERMINATED = "TERMINATED"


class NodeStatus(StrEnum):
    ARRIVED = "ARRIVED"
    EXECUTING = "EXECUTING"
    EXECUTED_COMPLETE = "EXECUTED_COMPLETE"
    EXECUTED_PARTIAL = "EXECUTED_PARTIAL"
    WAITING_MESSAGE_EVENT = "WAITING_MESSAGE_EVENT"
    WAITING_TIMER_EVENT = "WAITING_TIMER_EVENT"
    WAITING_MESSAGE = "WAITING_MESSAGE"
    MESSAGE_RECEIVED = "MESSAGE_RECEIVED"
    MESSAGE_RESPONSE_TIMED_OUT = "MESSAGE_RESPONSE_TIMED_OUT"


LIVE_TOKEN_STATES = frozenset({TokenState.ACTIVE, TokenState.ON_HOLD})


class Base(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=False):
    pass


class NodeActionState(Base):
    node_id: str
    name: str
    arrived_date: datetime
    action_state_data: dict[str, Any] | None = None


class BlockedOn(Base):
    """Why a token waits: exactly what an operator needs to see at a glance."""

    kind: str  # "userTask" | "job" | "message" | "timer" | "supervisedPause" | "join" | "error"
    task_id: str | None = None
    description: str = ""
    job_attempt: int | None = None  # 1 until a call fails, then the number of the last failed attempt
    job_max_attempts: int | None = None  # 1 + the task's Retries
    attempt_group: int | None = None  # service calls: bumped by each RetryFailedTask (idempotency key part)
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    message_name: str | None = None
    correlation_key: str | None = None
    due_at: datetime | None = None


class Token(Base):
    id: int
    uuid: str
    version: int = 1
    parent_token_id: int | None = None
    current_node_id: str = ""
    current_node_name: str = ""
    state: TokenState = TokenState.ACTIVE
    status_current_node: NodeStatus = NodeStatus.ARRIVED
    sync_node_tokens_count: int = 0
    sync_node_tokens_finished: int = 0
    date_updated: datetime | None = None
    nodes_action_states: list[NodeActionState] = msgspec.field(default_factory=list)
    back_seq: list[str] = msgspec.field(default_factory=list)
    blocked_on: BlockedOn | None = None
    # engine bookkeeping (kept on the token so a join or scope can be counted without a search)
    scope: str | None = None  # embedded subprocess / call activity scope this token runs in
    arrived_via: str | None = None  # flow id the token last travelled
    # call activity: the process graph key this token runs in (None = the instance's process)
    process_key: str | None = None


class ErrorInfo(Base):
    task_id: str
    task_name: str
    error_message: str
    error_details: str = ""
    occurred_at: datetime | None = None
    error_code: str | None = None
    token_id: int | None = None


class StepSnapshot(Base):
    """Everything needed to put the instance back exactly as it was before one task ran."""

    position: int
    task_id: str
    task_name: str
    task_type: str
    token_id: int
    variables: dict[str, Any]
    tokens: list[Token]
    completed_tasks: list[str]
    executed_at: datetime | None = None
    execution_time_ms: float | None = None
    success: bool | None = None
    side_effects: list[str] = msgspec.field(default_factory=list)


class InstanceState(Base):
    instance_guid: str
    process_key: str
    schema_version: int = SCHEMA_VERSION
    status: InstanceStatus = InstanceStatus.RUNNING
    execution_mode: ExecutionMode = ExecutionMode.UNSUPERVISED
    variables: dict[str, Any] = msgspec.field(default_factory=dict)
    tokens: list[Token] = msgspec.field(default_factory=list)
    next_token_id: int = 1
    completed_tasks: list[str] = msgspec.field(default_factory=list)
    error: ErrorInfo | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    outcome: str | None = None  # "success" | "terminated" | "error" | "cancelled"
    history_seq: int = 0  # last history sequence number handed out
    # supervised mode: the snapshots taken before each executed task, oldest first
    snapshots: list[StepSnapshot] = msgspec.field(default_factory=list)
    # call activities into other deployments: process key -> the definition id first entered
    called_definitions: dict[str, int] = msgspec.field(default_factory=dict)


class HistoryEvent(Base):
    seq: int
    event_type: str  # e.g. "InstanceStarted", "TaskCompleted", "TokenCreated", "TaskFailed"
    at: datetime
    node_id: str | None = None
    node_name: str | None = None
    node_type: str | None = None
    token_id: int | None = None
    actor: str | None = None
    comment: str | None = None
    data: dict[str, Any] | None = None


_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(InstanceState)


def encode_state(state: InstanceState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(raw: bytes | str) -> InstanceState:
    return _state_decoder.decode(raw)


def copy_state(state: InstanceState) -> InstanceState:
    """A deep copy cheap enough to take at the start of every transition."""
    return _state_decoder.decode(_state_encoder.encode(state))
