"""Commands and queries on process instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from commands.base import Command, Guid, JsonObject, NonEmpty, PageNumber, PageSize

ExecutionModeName = Literal["Unsupervised", "Supervised"]

_json_object = msgspec.json.Decoder(dict[str, Any])


class EmbeddedJsonError(ValueError):
    """A field that carries JSON text does not hold a JSON object."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path.rsplit('.', 1)[-1]} must be a JSON object: {reason}")
        self.path = path


def _object_from_text(text: str, path: str) -> dict[str, Any]:
    try:
        return _json_object.decode(text)
    except msgspec.DecodeError as exc:
        raise EmbeddedJsonError(path, str(exc)) from None
StatusName = Literal["running", "waiting", "error", "completed", "cancelled"]


class InheritFrom(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    instance_guid: Guid
    variables: list[str] | None = None  # names to copy; None copies every variable


class StartProcessInstance(Command, frozen=True):
    process_key: NonEmpty | None = None
    id: int | None = None
    version: int | None = None
    variables: JsonObject | None = None
    runtime_context: str | None = None  # JSON text, merged under `variables`
    business_key: str | None = None
    execution_mode: ExecutionModeName = "Unsupervised"
    start_node_id: NonEmpty | None = None
    start_condition: str | None = None
    inherit_from: InheritFrom | None = None
    instance_guid: Guid | None = None
    context_type: str | None = None
    context_id: Any = None

    def start_variables(self) -> dict[str, Any]:
        """`runtimeContext` (JSON text) overlaid by `variables`."""
        merged = _object_from_text(self.runtime_context, "$.data.runtimeContext") if self.runtime_context else {}
        merged.update(self.variables or {})
        return merged


class GetProcessInstanceState(Command, frozen=True):
    instance_guid: Guid


class GetProcessInstanceList(Command, frozen=True):
    page_number: PageNumber = 1
    page_size: PageSize = 20
    process_key: str | None = None
    status: StatusName | None = None
    business_key: str | None = None
    execution_mode: ExecutionModeName | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None


class GetProcessInstanceHistory(Command, frozen=True):
    instance_guid: Guid
    page_number: PageNumber = 1
    page_size: PageSize = 50


class SignalProcessInstance(Command, frozen=True):
    instance_guid: Guid | None = None
    correlation_key: str | None = None
    task_id: NonEmpty | None = None
    callback_data: JsonObject | None = None
    signal_payload: JsonObject | None = None
    signal_data: str | None = None  # JSON text
    action: NonEmpty | None = None
    current_user: str | None = None

    def payload(self) -> dict[str, Any]:
        """The submission, from whichever of its three spellings the client used."""
        if self.callback_data is not None:
            return dict(self.callback_data)
        if self.signal_payload is not None:
            return dict(self.signal_payload)
        if self.signal_data:
            return _object_from_text(self.signal_data, "$.data.signalData")
        return {}


class CancelProcessInstance(Command, frozen=True):
    instance_guid: Guid
    reason: str | None = None
    cancelled_by: str | None = None


class RetryFailedTask(Command, frozen=True):
    instance_guid: Guid
    updated_variables: JsonObject | None = None
    comment: str | None = None


class SkipFailedTask(Command, frozen=True):
    instance_guid: Guid
    additional_data: JsonObject | None = None
    comment: str | None = None


class StepForward(Command, frozen=True):
    instance_guid: Guid
    token_id: int | None = None


class StepBackward(Command, frozen=True):
    instance_guid: Guid


class SetExecutionMode(Command, frozen=True):
    instance_guid: Guid
    execution_mode: ExecutionModeName
