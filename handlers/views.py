"""The instance state clients read (API.md "Instance state"), derived from the stored record and graph."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain import view
from domain.engine import ProcessLookup
from domain.graph_index import index_of
from domain.model import Definition
from domain.state import ExecutionMode, InstanceState, InstanceStatus, Token
from handlers.instance_steps import Applied
from handlers.ports import DefinitionRecord, InstanceRecord

# Engine bookkeeping on tokens that is not part of the token model clients read.
_INTERNAL_TOKEN_FIELDS = ("scope", "arrivedVia", "processKey")



def format_duration(start: datetime | None, end: datetime | None) -> str | None:
    if start is None or end is None:
        return None
    total = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def token_view(token: Token) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(token)
    for name in _INTERNAL_TOKEN_FIELDS:
        data.pop(name, None)
    return data


def _finished(state: InstanceState) -> bool:
    return state.status in (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED)


def instance_view(
    record: InstanceRecord,
    definition: Definition,
    *,
    now: datetime,
    focus_token: int | None = None,
    lookup: ProcessLookup | None = None,
) -> dict[str, Any]:
    """The instance state; `currentTask` is the oldest waiting task, or the one `focus_token` waits at."""
    state = record.state
    waiting = view.waiting_tasks(definition, state, lookup)
    focused = [w for w in waiting if w.token_id == focus_token]
    if focused:
        waiting = focused + [w for w in waiting if w.token_id != focus_token]
    current = view.current_activity(state)
    out: dict[str, Any] = {
        "instanceGuid": record.instance_guid,
        "processDefinitionId": record.definition_id,
        "processKey": record.process_key,
        "processName": record.process_name,
        "version": record.definition_version,
        "businessKey": record.business_key,
        "status": str(state.status),
        "executionMode": str(state.execution_mode),
        "currentActivityId": current,
        "startedAt": record.started_at,
        "lastUpdated": record.updated_at,
        "completedAt": state.completed_at,
        "duration": format_duration(record.started_at, state.completed_at or now),
        "waiting": state.status is InstanceStatus.WAITING,
        "state": {
            "variables": state.variables,
            "currentNode": current,
            "completedTasks": state.completed_tasks,
        },
        "tokens": [token_view(t) for t in state.tokens],
        "contextType": record.context_type,
        "contextId": record.context_id,
    }
    if waiting:
        first = waiting[0]
        out["currentTask"] = {
            "taskId": first.task_id,
            "taskName": first.task_name,
            "taskType": first.task_type,
            "assignedTo": first.assigned_to,
            "waitingSince": first.waiting_since,
        }
        if len(waiting) > 1:
            out["waitingTasks"] = [
                {"taskId": w.task_id, "taskName": w.task_name, "taskType": w.task_type, "tokenId": w.token_id}
                for w in waiting
            ]
    if state.error is not None and state.status is InstanceStatus.ERROR:
        out["error"] = {
            "taskId": state.error.task_id,
            "taskName": state.error.task_name,
            "errorMessage": state.error.error_message,
            "errorDetails": state.error.error_details,
            "occurredAt": state.error.occurred_at,
        }
    out["nextActions"] = view.next_actions(definition, state, lookup)
    if state.execution_mode is ExecutionMode.SUPERVISED:
        _add_supervision(out, definition, state, waiting[0] if waiting else None, lookup)
    if _finished(state):
        out["summary"] = {
            "totalTasks": _executed_tasks(definition, state),
            "totalDuration": format_duration(record.started_at, state.completed_at),
            "outcome": state.outcome,
        }
    else:
        out.pop("completedAt")
    return out


def applied_view(applied: Applied, *, now: datetime, focus_token: int | None = None) -> dict[str, Any]:
    """The state after a command that moved the instance."""
    return instance_view(
        applied.record, applied.definition, now=now, focus_token=focus_token, lookup=applied.called.lookup
    )


def _add_supervision(
    out: dict[str, Any],
    definition: Definition,
    state: InstanceState,
    current: view.WaitingTask | None,
    lookup: ProcessLookup | None,
) -> None:
    """Supervised mode: where the instance stands among its steps (`position`, `totalTasks`,
    `progress`) and how the last step went (`previousTask`)."""
    if _finished(state):
        position = total = len(state.snapshots)
    else:
        total = view.total_tasks_on_path(definition, state, lookup)
        error = state.error if state.status is InstanceStatus.ERROR else None
        token_id = current.token_id if current is not None else error.token_id if error is not None else None
        position = view.position(state, token_id)
        total = max(total, position)  # a failure off the task path (a gateway) still stands somewhere
    task = out.get("currentTask")
    if task is not None:
        task["position"] = position
        task["totalTasks"] = total
    out["progress"] = view.progress(position, total)
    previous = view.previous_task(state)
    if previous is not None:
        out["previousTask"] = previous


def _executed_tasks(definition: Definition, state: InstanceState) -> int:
    """Tasks run, not the events and gateways `completedTasks` also lists."""
    tasks = frozenset().union(*(index_of(graph).tasks for graph in definition.processes.values()))
    return sum(1 for node_id in state.completed_tasks if node_id in tasks)


def instance_summary(record: InstanceRecord) -> dict[str, Any]:
    state = record.state
    return {
        "instanceGuid": record.instance_guid,
        "processDefinitionId": record.definition_id,
        "processKey": record.process_key,
        "processName": record.process_name,
        "version": record.definition_version,
        "businessKey": record.business_key,
        "status": record.status,
        "executionMode": record.execution_mode,
        "currentActivityId": view.current_activity(state),
        "startedAt": record.started_at,
        "lastUpdated": record.updated_at,
        "completedAt": record.completed_at,
        "contextType": record.context_type,
        "contextId": record.context_id,
    }


def definition_view(record: DefinitionRecord, *, include_xml: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.id,
        "processKey": record.process_key,
        "name": record.name,
        "version": record.version,
        "description": record.description,
        "category": record.category,
        "isActive": record.is_active,
        "processes": record.processes,
        "elementCounts": record.element_counts,
        "metadata": record.metadata,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
    }
    if include_xml:
        out["bpmnXml"] = record.bpmn_xml
    return out


def paged(items: list[Any], total: int, page_number: int, page_size: int) -> dict[str, Any]:
    pages = (total + page_size - 1) // page_size
    return {
        "items": items,
        "pageNumber": page_number,
        "pageSize": page_size,
        "totalPages": pages,
        "totalRecords": total,
        "hasNextPage": page_number < pages,
        "hasPreviousPage": page_number > 1,
    }
