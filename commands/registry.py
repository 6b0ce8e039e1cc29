"""Wire names (and the aliases existing clients send) to command classes, with one decoder each."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from commands.base import Command
from commands.definitions import (
    CreateProcessDefinition,
    DeleteProcessDefinition,
    GetProcessDefinitionById,
    GetProcessDefinitionList,
    UpdateProcessDefinition,
)
from commands.instances import (
    CancelProcessInstance,
    GetProcessInstanceHistory,
    GetProcessInstanceList,
    GetProcessInstanceState,
    RetryFailedTask,
    SetExecutionMode,
    SignalProcessInstance,
    SkipFailedTask,
    StartProcessInstance,
    StepBackward,
    StepForward,
)

_NAMES: dict[str, type[Command]] = {
    "CreateProcessDefinitionCommand": CreateProcessDefinition,
    "CreateProcessDefinitiionCommand": CreateProcessDefinition,
    "DeployProcessDefinitionCommand": CreateProcessDefinition,
    "UpdateProcessDefinitionCommand": UpdateProcessDefinition,
    "UpdateProcessDefinitiionCommand": UpdateProcessDefinition,
    "GetProcessDefinitionByIdQuery": GetProcessDefinitionById,
    "GetProcessDefinitiionByIdQuery": GetProcessDefinitionById,
    "GetProcessDefinitionListQuery": GetProcessDefinitionList,
    "GetProcessDefinitiionListQuery": GetProcessDefinitionList,
    "DeleteProcessDefinitionCommand": DeleteProcessDefinition,
    "DeleteProcessDefinitiionCommand": DeleteProcessDefinition,
    "StartProcessInstanceCommand": StartProcessInstance,
    "GetProcessInstanceStateCommand": GetProcessInstanceState,
    "GetProcessInstanceListQuery": GetProcessInstanceList,
    "GetProcessInstanceHistoryQuery": GetProcessInstanceHistory,
    "SignalProcessInstanceCommand": SignalProcessInstance,
    "CancelProcessInstanceCommand": CancelProcessInstance,
    "RetryFailedTaskCommand": RetryFailedTask,
    "SkipFailedTaskCommand": SkipFailedTask,
    "StepForwardCommand": StepForward,
    "StepBackwardCommand": StepBackward,
    "SetExecutionModeCommand": SetExecutionMode,
}

COMMANDS: Mapping[str, type[Command]] = MappingProxyType(_NAMES)

# One prebuilt decoder per class, shared by its aliases.
DECODERS: Mapping[type[Command], msgspec.json.Decoder[Command]] = MappingProxyType(
    {cls: msgspec.json.Decoder(cls) for cls in set(_NAMES.values())}
)

# Reads that change nothing: an Idempotency-Key on them is ignored.
QUERIES: frozenset[type[Command]] = frozenset(
    {GetProcessDefinitionById, GetProcessDefinitionList, GetProcessInstanceState,
     GetProcessInstanceList, GetProcessInstanceHistory}
)
