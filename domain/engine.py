"""The engine's public API: pure transitions over an instance state.

Each function takes the definition, the current state (never mutated) and the time and id
source as arguments, runs the token machine until every token waits, finishes or blocks on
I/O, and returns a Transition (new state, history events, effects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from domain import results, scripting, supervision
from domain.errors import (
    InvalidAction,
    InvalidStateForCommand,
    MandatoryParamsMissing,
    MultipleStartNodes,
    StartNodeNotFound,
    TaskNotWaiting,
)
from domain.gateways import label
from domain.graph_index import index_of
from domain.model import Definition, Node, NodeKind
from domain.runner import ProcessLookup, Run
from domain.state import (
    ExecutionMode,
    InstanceState,
    InstanceStatus,
    NodeStatus,
    Token,
    TokenState,
    copy_state,
)
from domain.tokens import (
    COMPLETABLE_WAITS,
    ERROR,
    JOB,
    SIGNALLED_WAITS,
    TIMER,
    USER_TASK,
    finish,
    is_alive,
    kind_of,
    touch,
)
from domain.transition import IdSource, Transition
from domain.user_actions import UserAction, user_actions

__all__ = [
    "Limits",
    "ProcessLookup",
    "cancel",
    "complete_task",
    "fail_task",
    "fail_timer",
    "fire_timer",
    "retry_failed",
    "set_execution_mode",
    "skip_failed",
    "start",
    "start_nodes",
    "step_backward",
    "step_forward",
]

_FINISHED = (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class Limits:
    max_steps: int = 1000  # node executions per command before the instance stops in error


# -- starting -----------------------------------------------------------------------------------


def start_nodes(definition: Definition, process_key: str | None = None) -> list[Node]:
    """The start events of a process's top level, in document order."""
    graph = definition.processes.get(process_key or definition.main_process)
    if graph is None:
        return []
    return [graph.nodes[n] for n in graph.start_nodes if n in graph.nodes]


def _choose_start(
    definition: Definition, key: str, start_node_id: str | None, start_condition: str | None,
    variables: Mapping[str, Any],
) -> Node:
    """`startNodeId` wins; a `startCondition` picks the start event it names (id, name or its
    `startCondition` property), else the first whose `condition` property, a JavaScript expression
    that sees the variables and `startCondition`, holds; else the one none start event."""
    if start_node_id is not None or start_condition is not None:
        return _named_start(definition, key, start_node_id, start_condition, variables)
    candidates = index_of(definition.processes[key]).plain_starts  # computed once per process
    if len(candidates) > 1:
        raise MultipleStartNodes(
            "Multiple start nodes found, but start condition not specified.",
            details={"startNodes": [n.id for n in candidates]},
        )
    if not candidates:
        raise StartNodeNotFound("Start node for process definition not found.")
    return candidates[0]


def _named_start(
    definition: Definition, key: str, start_node_id: str | None, start_condition: str | None,
    variables: Mapping[str, Any],
) -> Node:
    starts = start_nodes(definition, key)
    if start_node_id is None:
        start_node_id = _start_by_condition(starts, (start_condition or "").strip(), variables)
    for node in starts:
        if node.id == start_node_id:
            return node
    raise StartNodeNotFound("Start node for process definition not found.", details={"startNodeId": start_node_id})


def _start_by_condition(starts: list[Node], wanted: str, variables: Mapping[str, Any]) -> str:
    for node in starts:
        if wanted in (node.id, node.name, node.prop("startCondition")):
            return node.id
    for node in starts:
        expression = node.prop("condition")
        if expression and scripting.evaluate_condition(expression, {**variables, "startCondition": wanted}):
            return node.id
    raise StartNodeNotFound("Start node for process definition not found.", details={"startCondition": wanted})


def _json_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(msgspec.json.encode(dict(variables)))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidStateForCommand(f"Variables must be JSON values: {exc}") from exc
    if not isinstance(value, dict):  # pragma: no cover - a dict always encodes to an object
        raise InvalidStateForCommand("Variables must be a JSON object.")
    return value


def start(
    definition: Definition,
    *,
    instance_guid: str,
    variables: Mapping[str, Any],
    now: datetime,
    ids: IdSource,
    process_key: str | None = None,
    start_node_id: str | None = None,
    start_condition: str | None = None,
    execution_mode: ExecutionMode = ExecutionMode.UNSUPERVISED,
    actor: str | None = None,
    limits: Limits = Limits(),
    lookup: ProcessLookup | None = None,
) -> Transition:
    key = process_key or definition.main_process
    if key not in definition.processes:
        raise StartNodeNotFound("Start node for process definition not found.", details={"processKey": key})
    node = _choose_start(definition, key, start_node_id, start_condition, variables)
    values = _json_variables(variables)
    mandatory = [p.strip() for p in (node.prop("mandatoryParams") or "").split(",") if p.strip()]
    missing = [p for p in mandatory if values.get(p) is None]
    if missing:
        raise MandatoryParamsMissing("Some mandatory params are missing.", details={"missingParams": missing})
    state = InstanceState(
        instance_guid=instance_guid,
        process_key=key,
        status=InstanceStatus.RUNNING,
        execution_mode=execution_mode,
        variables=values,
        started_at=now,
        updated_at=now,
    )
    run = Run(definition, state, now=now, ids=ids, lookup=lookup, max_steps=limits.max_steps)
    data = {"startNodeId": node.id, "executionMode": str(execution_mode)}
    run.history.add("InstanceStarted", node=node, actor=actor, data=data)
    run.place(run.new_token(None, None), node, None)
    return _finish(run)


def _finish(run: Run) -> Transition:
    run.drain()
    run.settle()
    return run.transition()


def _open(
    definition: Definition, state: InstanceState, now: datetime, ids: IdSource,
    lookup: ProcessLookup | None, limits: Limits,
) -> Run:
    return Run(definition, copy_state(state), now=now, ids=ids, lookup=lookup, max_steps=limits.max_steps)


def _refuse_finished(state: InstanceState, doing: str) -> None:
    if state.status in _FINISHED:
        raise InvalidStateForCommand(f"Instance '{state.instance_guid}' is {state.status.value}; {doing}.")


# -- completing waits -----------------------------------------------------------------------------


def _waiting(run: Run, kinds: frozenset[str]) -> list[Token]:
    return [t for t in run.state.tokens if t.state is TokenState.ACTIVE and kind_of(t) in kinds]


def _select_token(run: Run, token_id: int | None, task_id: str | None) -> Token:
    if token_id is not None:
        token = run.table.by_id.get(token_id)
        if token is None or token.state is not TokenState.ACTIVE or kind_of(token) not in COMPLETABLE_WAITS:
            raise TaskNotWaiting(f"Token {token_id} is not waiting on a task.")
        if task_id is not None and token.current_node_id != task_id:
            raise TaskNotWaiting(f"Token {token_id} is not waiting at task '{task_id}'.")
        return token
    if task_id is not None:
        # Only waits a client may end: a service call or a timer is completed by its job, never by a signal.
        for token in _waiting(run, SIGNALLED_WAITS):
            if token.current_node_id == task_id:
                return token
        raise TaskNotWaiting(f"Task '{task_id}' is not waiting for a signal.")
    waiting = _waiting(run, SIGNALLED_WAITS)
    if not waiting:
        raise TaskNotWaiting(f"No task is waiting for a signal in instance '{run.state.instance_guid}'.")
    if len(waiting) > 1:
        names = ", ".join(dict.fromkeys(t.current_node_id for t in waiting))
        raise InvalidStateForCommand(f"Several tasks are waiting; name one with taskId: {names}.")
    return waiting[0]


def _check_action(node: Node, actions: list[UserAction], action: str | None) -> None:
    if not actions:
        return
    allowed = [a.action for a in actions]
    if action in allowed:
        return
    shown = ", ".join(allowed)
    if action is None:
        raise InvalidAction(
            f"Task '{node.id}' needs an action; allowed: {shown}.", details={"allowedActions": allowed}
        )
    raise InvalidAction(
        f"Action '{action}' is not allowed for task '{node.id}'; allowed: {shown}.",
        details={"allowedActions": allowed},
    )


def _submission(result: Any, action: str | None, actor: str | None) -> dict[str, Any]:
    """A user task's result: the submitted data plus the action chosen and who chose it."""
    submitted: dict[str, Any] = {}
    if isinstance(result, Mapping):
        submitted.update(result)
    elif result is not None:
        submitted["value"] = result
    submitted["action"] = action
    submitted["currentUser"] = actor
    return submitted


def complete_task(
    definition: Definition,
    state: InstanceState,
    *,
    now: datetime,
    ids: IdSource,
    result: Any = None,
    token_id: int | None = None,
    task_id: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    """Finish a waiting user task, receive task / message or signal catch, timer, or service job."""
    _refuse_finished(state, "there is no task to complete")
    run = _open(definition, state, now, ids, lookup, limits)
    token = _select_token(run, token_id, task_id)
    node = run.node_of(token)
    kind = kind_of(token)
    if kind == USER_TASK:
        _check_action(node, user_actions(run.index_for(token.process_key), node), action)
        value, default = _json_variables(_submission(result, action, actor)), results.DEFAULT_USER_TASK
    elif kind == JOB:
        value, default = _json_variables({"r": result})["r"], results.DEFAULT_SERVICE
    else:
        value, default = _json_variables({"r": result})["r"], results.DEFAULT_SIGNAL
    token.blocked_on = None
    token.status_current_node = NodeStatus.EXECUTING
    touch(token, now)
    if kind == TIMER:
        run.history.add("TimerFired", node=node, token=token)
        run.leave_node(token, node)
    else:
        run.complete_activity(token, node, value, default)
    if run.history.events and actor is not None:
        for event in run.history.events:
            if event.event_type == "TaskCompleted" and event.token_id == token.id:
                event.actor = actor
                break
    return _finish(run)


def fire_timer(
    definition: Definition,
    state: InstanceState,
    *,
    token_id: int,
    now: datetime,
    ids: IdSource,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    """A timer catch event is due: its token moves on."""
    _refuse_finished(state, "its timers no longer fire")
    token = next((t for t in state.tokens if t.id == token_id), None)
    blocked = token.blocked_on if token is not None and token.state is TokenState.ACTIVE else None
    if blocked is None or blocked.kind != TIMER:
        raise TaskNotWaiting(f"Token {token_id} is not waiting on a timer.")
    if blocked.due_at is not None and now < blocked.due_at:
        raise InvalidStateForCommand(f"The timer of token {token_id} is due at {blocked.due_at.isoformat()}.")
    return complete_task(definition, state, now=now, ids=ids, token_id=token_id, lookup=lookup, limits=limits)


def fail_task(
    definition: Definition,
    state: InstanceState,
    *,
    token_id: int,
    message: str,
    details: str = "",
    error_code: str | None = None,
    now: datetime,
    ids: IdSource,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    """A service job failed for good: follow a matching error boundary, else the instance fails."""
    _refuse_finished(state, "there is no task to fail")
    run = _open(definition, state, now, ids, lookup, limits)
    token = run.table.by_id.get(token_id)
    if token is None or token.state is not TokenState.ACTIVE or kind_of(token) != JOB:
        raise TaskNotWaiting(f"Token {token_id} is not waiting for a service call.")
    node = run.node_of(token)
    if error_code:
        run.throw_error(token, node, error_code, message, from_end_event=False)
    else:
        run.fail(token, node, f"Service task {label(node)} failed: {message}", details=details)
    return _finish(run)


def fail_timer(
    definition: Definition,
    state: InstanceState,
    *,
    token_id: int,
    message: str,
    now: datetime,
    ids: IdSource,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    """A timer's job could not fire it (its attempts are spent): the instance fails at the timer,
    from where RetryFailedTask schedules it afresh or SkipFailedTask moves on."""
    _refuse_finished(state, "its timers no longer fire")
    run = _open(definition, state, now, ids, lookup, limits)
    token = run.table.by_id.get(token_id)
    if token is None or token.state is not TokenState.ACTIVE or kind_of(token) != TIMER:
        raise TaskNotWaiting(f"Token {token_id} is not waiting on a timer.")
    node = run.node_of(token)
    run.fail(token, node, f"Timer {label(node)} could not fire: {message}")
    return _finish(run)


# -- operator commands -----------------------------------------------------------------------------


def cancel(
    definition: Definition, state: InstanceState, *, reason: str | None, actor: str | None, now: datetime,
    ids: IdSource,
) -> Transition:
    _refuse_finished(state, "it cannot be cancelled")
    run = _open(definition, state, now, ids, None, Limits())
    for token in run.state.tokens:
        if is_alive(token):
            run.cancel_jobs(token)
            finish(token, now, TokenState.DISMISSED)
    run.state.status = InstanceStatus.CANCELLED
    run.state.outcome = "cancelled"
    run.state.completed_at = now
    run.state.updated_at = now
    run.state.error = None
    run.history.add("InstanceCancelled", actor=actor, comment=reason)
    return run.transition()


def _failed_token(run: Run, doing: str) -> Token:
    state = run.state
    if state.status is not InstanceStatus.ERROR:
        raise InvalidStateForCommand(
            f"Instance '{state.instance_guid}' is not in error; only a failed task can be {doing}."
        )
    error = state.error
    token = run.table.by_id.get(error.token_id) if error is not None and error.token_id is not None else None
    if token is None or kind_of(token) != ERROR:
        token = next((t for t in state.tokens if is_alive(t) and kind_of(t) == ERROR), None)
    if token is None:
        raise InvalidStateForCommand(f"Instance '{state.instance_guid}' has no failed task that can be {doing}.")
    return token


def _merge(run: Run, values: Mapping[str, Any]) -> dict[str, Any]:
    clean = _json_variables(values)
    run.state.variables.update(clean)
    return clean


def retry_failed(
    definition: Definition,
    state: InstanceState,
    *,
    updated_variables: Mapping[str, Any] | None,
    comment: str | None,
    actor: str | None,
    now: datetime,
    ids: IdSource,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    """Merge the variables and run the failed node again (a service task calls out afresh)."""
    run = _open(definition, state, now, ids, lookup, limits)
    token = _failed_token(run, "retried")
    node = run.node_of(token)
    changed = _merge(run, updated_variables or {})
    previous = token.blocked_on
    if node.kind is NodeKind.SERVICE_TASK:
        run.attempt_groups[token.id] = (previous.attempt_group or 1) + 1 if previous is not None else 2
    run.state.error = None
    token.blocked_on = None
    touch(token, now)
    run.released = token.id  # supervised mode: the retry is the step, no new pause before it
    run.history.add("TaskRetried", node=node, token=token, actor=actor, comment=comment,
                    data={"variablesChanged": changed})
    return _finish(run)


def skip_failed(
    definition: Definition,
    state: InstanceState,
    *,
    additional_data: Mapping[str, Any] | None,
    comment: str | None,
    actor: str | None,
    now: datetime,
    ids: IdSource,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    """Merge the variables and leave the failed node by its outgoing flow(s) without running it."""
    run = _open(definition, state, now, ids, lookup, limits)
    token = _failed_token(run, "skipped")
    node = run.node_of(token)
    changed = _merge(run, additional_data or {})
    run.state.error = None
    token.blocked_on = None
    token.status_current_node = NodeStatus.EXECUTED_COMPLETE
    touch(token, now)
    run.history.add("TaskSkipped", node=node, token=token, actor=actor, comment=comment,
                    data={"variablesChanged": changed})
    run.leave_node(token, node)
    return _finish(run)


# -- supervised mode ---------------------------------------------------------------------------------


def step_forward(
    definition: Definition,
    state: InstanceState,
    *,
    now: datetime,
    ids: IdSource,
    token_id: int | None = None,
    actor: str | None = None,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
    stopwatch: supervision.Stopwatch | None = None,
) -> Transition:
    """Run the task the chosen (else the oldest) paused token stands before; `stopwatch` (monotonic
    milliseconds) times a task that finishes within the step."""
    run = _open(definition, state, now, ids, lookup, limits)
    supervision.step_forward(run, token_id=token_id, actor=actor, stopwatch=stopwatch)
    return _finish(run)


def step_backward(
    definition: Definition,
    state: InstanceState,
    *,
    now: datetime,
    ids: IdSource,
    actor: str | None = None,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    run = _open(definition, state, now, ids, lookup, limits)
    supervision.step_backward(run, actor=actor)
    return _finish(run)


def set_execution_mode(
    definition: Definition,
    state: InstanceState,
    mode: ExecutionMode,
    *,
    now: datetime,
    ids: IdSource,
    actor: str | None = None,
    lookup: ProcessLookup | None = None,
    limits: Limits = Limits(),
) -> Transition:
    _refuse_finished(state, "its execution mode cannot change")
    run = _open(definition, state, now, ids, lookup, limits)
    supervision.set_mode(run, mode, actor=actor)
    return _finish(run)

