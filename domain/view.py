"""Read-only helpers for the instance state clients see (API.md "Instance state").

Only what needs the graph or the token rules is here; the handlers assemble the JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain import task_path
from domain.graph_index import global_task_graph, index_of
from domain.history import node_type
from domain.model import Definition, Node, ProcessGraph
from domain.runner import ProcessLookup
from domain.state import ExecutionMode, InstanceState, InstanceStatus, Token, TokenState
from domain.tokens import JOB, MESSAGE, PAUSE, SIGNAL, TIMER, USER_TASK, is_alive, is_pending_join, kind_of
from domain.user_actions import user_actions

# Waits shown as the instance's current task(s).
_SHOWN_WAITS = frozenset({USER_TASK, MESSAGE, SIGNAL, TIMER, JOB, PAUSE})

RETRY_ACTIONS: tuple[dict[str, Any], ...] = (
    {"action": "retry", "label": "Retry Failed Task", "command": "RetryFailedTaskCommand"},
    {"action": "skip", "label": "Skip Failed Task", "command": "SkipFailedTaskCommand"},
    {"action": "cancel", "label": "Cancel Instance", "command": "CancelProcessInstanceCommand"},
)
SUPERVISED_ACTIONS: tuple[dict[str, Any], ...] = (
    {"action": "stepForward", "label": "Step Forward", "command": "StepForwardCommand"},
    {"action": "stepBackward", "label": "Step Backward", "command": "StepBackwardCommand"},
    {"action": "cancel", "label": "Cancel Instance", "command": "CancelProcessInstanceCommand"},
)


class WaitingTask(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    task_id: str
    task_name: str
    task_type: str
    token_id: int
    kind: str  # the token's blockedOn kind: userTask, message, signal, timer, job, supervisedPause
    assigned_to: str | None = None
    waiting_since: datetime | None = None
    user_actions: list[dict[str, str]] = msgspec.field(default_factory=list)


def _graph(definition: Definition, state: InstanceState, key: str | None,
           lookup: ProcessLookup | None) -> ProcessGraph | None:
    name = key or state.process_key
    graph = definition.processes.get(name)
    if graph is None and name in definition.global_tasks:
        graph = global_task_graph(definition.global_tasks[name])
    if graph is None and lookup is not None:
        graph = lookup(name)
    return graph


def node_of(definition: Definition, state: InstanceState, token: Token,
            lookup: ProcessLookup | None = None) -> Node | None:
    graph = _graph(definition, state, token.process_key, lookup)
    return graph.nodes.get(token.current_node_id) if graph is not None else None


def waiting_tasks(definition: Definition, state: InstanceState,
                  lookup: ProcessLookup | None = None) -> list[WaitingTask]:
    """Tasks (and catch events) tokens wait at, oldest token first."""
    found: list[WaitingTask] = []
    for token in state.tokens:
        kind = kind_of(token)
        if token.state is not TokenState.ACTIVE or kind not in _SHOWN_WAITS or kind is None:
            continue
        node = node_of(definition, state, token, lookup)
        graph = _graph(definition, state, token.process_key, lookup)
        actions: list[dict[str, str]] = []
        if node is not None and graph is not None:
            actions = [{"action": a.action, "label": a.label} for a in user_actions(index_of(graph), node)]
        history = token.nodes_action_states
        arrived = history[-1].arrived_date if history else token.date_updated
        found.append(
            WaitingTask(
                task_id=token.current_node_id,
                task_name=token.current_node_name,
                task_type=node_type(node.kind) if node is not None else "Task",
                token_id=token.id,
                kind=kind,
                assigned_to=(node.assignee or node.candidate_groups or node.prop("ResponsibleTeam"))
                if node is not None else None,
                waiting_since=arrived,
                user_actions=actions,
            )
        )
    return found


def current_activity(state: InstanceState) -> str | None:
    """The node the instance stands at: the failed task, else the oldest token still moving or waiting."""
    if state.status is InstanceStatus.ERROR and state.error is not None:
        return state.error.task_id
    for token in state.tokens:
        if is_alive(token) and token.state is not TokenState.ON_HOLD and not is_pending_join(token):
            return token.current_node_id
    return None


def next_actions(definition: Definition, state: InstanceState,
                 lookup: ProcessLookup | None = None) -> list[dict[str, Any]]:
    """What a client can do now: user actions of waiting user tasks, retry/skip/cancel in error,
    stepping in supervised mode (stepForward only while a task is paused before)."""
    supervised = state.execution_mode is ExecutionMode.SUPERVISED
    step_forward, step_backward, cancel = SUPERVISED_ACTIONS
    if state.status is InstanceStatus.ERROR:
        recovery = [dict(a) for a in RETRY_ACTIONS]
        if supervised:
            recovery.insert(len(recovery) - 1, dict(step_backward))  # undo the failed step
        return recovery
    if state.status in (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED):
        return []
    actions: list[dict[str, Any]] = []
    waiting = waiting_tasks(definition, state, lookup)
    for task in waiting:
        for action in task.user_actions:
            actions.append({**action, "userAction": True, "taskId": task.task_id})
    if supervised:
        if any(task.kind == PAUSE for task in waiting):
            actions.append(dict(step_forward))
        actions.extend((dict(step_backward), dict(cancel)))
    return actions


def previous_task(state: InstanceState) -> dict[str, Any] | None:
    """The step taken last in supervised mode, as the API reports it (`previousTask`)."""
    if not state.snapshots:
        return None
    last = state.snapshots[-1]
    return {
        "taskId": last.task_id,
        "taskName": last.task_name,
        "taskType": last.task_type,
        "executionTime": last.execution_time_ms,
        "success": last.success,
    }


def position(state: InstanceState, token_id: int | None = None) -> int:
    """Supervised mode: the step number of the task a token stands at (by default: the next step).

    A task whose step is under way (a user task waiting for its signal, a service call, a failed
    step) keeps the number of that step; a task paused before is the next step."""
    if token_id is not None:
        token = next((t for t in state.tokens if t.id == token_id), None)
        if token is not None and kind_of(token) != PAUSE:
            for snapshot in reversed(state.snapshots):
                if snapshot.token_id == token_id:
                    if snapshot.task_id == token.current_node_id and snapshot.success is not True:
                        return snapshot.position
                    break
    return len(state.snapshots) + 1


def total_tasks_on_path(definition: Definition, state: InstanceState,
                        lookup: ProcessLookup | None = None) -> int:
    """Supervised `totalTasks`: steps taken so far plus the tasks on the path ahead (see task_path)."""
    return task_path.total_on_path(definition, state, lookup)


def progress(current: int, total: int) -> dict[str, Any]:
    """`progress` of the supervised view; percentage rounded to 2 decimals."""
    percentage = round(100.0 * current / total, 2) if total > 0 else 0.0
    return {"current": current, "total": total, "percentage": percentage}
