"""The command → handler table the bus dispatches on."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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
from handlers import definitions, instances, starting, supervised
from handlers.bus import Handler

HANDLERS: Mapping[type[Command], Handler] = MappingProxyType(
    {
        CreateProcessDefinition: definitions.create_definition,
        UpdateProcessDefinition: definitions.update_definition,
        GetProcessDefinitionById: definitions.get_definition,
        GetProcessDefinitionList: definitions.list_definitions,
        DeleteProcessDefinition: definitions.delete_definition,
        StartProcessInstance: starting.start_instance,
        GetProcessInstanceState: instances.get_state,
        GetProcessInstanceList: instances.list_instances,
        GetProcessInstanceHistory: instances.get_history,
        SignalProcessInstance: instances.signal_instance,
        CancelProcessInstance: instances.cancel_instance,
        RetryFailedTask: instances.retry_failed_task,
        SkipFailedTask: instances.skip_failed_task,
        StepForward: supervised.step_forward,
        StepBackward: supervised.step_backward,
        SetExecutionMode: supervised.set_execution_mode,
    }
)
