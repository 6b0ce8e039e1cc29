"""Supervised mode (step debugging): pause before every task, step forward, step back.

In supervised mode a token that reaches a task stops before running it (blocked on kind
"supervisedPause"; the instance is `waiting`). Stepping forward releases exactly one paused
token: a snapshot of the variables, tokens and completed tasks is taken, the task runs, and the
run continues until every token waits again. A user task still waits for its signal and a
service task for its call: the step ends when they complete.

Stepping back undoes the most recent step from its snapshot: variables and tokens are put back
exactly, the token that had moved is ABORTED and a fresh token takes its place (its slot in the
token list too, so "the oldest paused token" is the same lineage again), paused before the task.
Because the whole token list is restored, what the step set off is undone with it (branches an
error boundary stopped come back, their timers are scheduled again). Stepping back is refused at
the first step, after the stepped token was merged by a join or left a subprocess (those moves
took tokens the step did not own), and when something outside stepping moved another branch
since the step (a signal, a service reply, a timer, a retry): restoring the snapshot would
silently undo that as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from domain import gateways
from domain.errors import InvalidStateForCommand
from domain.history import node_type
from domain.model import GATEWAY_KINDS, Node
from domain.state import (
    BlockedOn,
    ExecutionMode,
    HistoryEvent,
    InstanceStatus,
    NodeStatus,
    StepSnapshot,
    Token,
    TokenState,
)
from domain.tokens import (
    ERROR,
    JOB,
    PAUSE,
    SIGNALLED_WAITS,
    TIMER,
    block,
    is_alive,
    is_pending_join,
    kind_of,
    touch,
)
from domain.transition import ScheduleTimer

if TYPE_CHECKING:
    from domain.runner import Run

# Milliseconds from a monotonic clock; handed in by the caller (the domain reads no clock).
Stopwatch = Callable[[], float]

# Waits only something outside stepping ends: a signal, a service reply, a timer, an operator.
_OUTSIDE_WAITS = SIGNALLED_WAITS | {JOB, TIMER, ERROR}
_KILLED = (TokenState.TERMINATED, TokenState.DISMISSED)
_SUPERVISED = ExecutionMode.SUPERVISED  # looked up once: enum member access is slow on 3.11

_tokens_type = list[Token]


def _copy_tokens(tokens: list[Token]) -> list[Token]:
    return msgspec.convert(msgspec.to_builtins(tokens), _tokens_type)


def _copy_json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def changed_names(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Variables added, removed or given another value, by name."""
    names = set(before) | set(after)
    return sorted(n for n in names if n not in before or n not in after or before[n] != after[n])


def may_run(run: Run, token: Token, node: Node) -> bool:
    """Called before a task runs: pause it in supervised mode unless this step released it."""
    state = run.state
    if state.execution_mode is not _SUPERVISED:
        return True
    if run.released == token.id:
        run.released = None
        _snapshot(run, token, node)
        return True
    block(token, run.now, NodeStatus.ARRIVED, _pause(node))
    return False


def _pause(node: Node) -> BlockedOn:
    return BlockedOn(kind=PAUSE, task_id=node.id, description=f"Paused before task {gateways.label(node)}")


def _snapshot(run: Run, token: Token, node: Node) -> None:
    state = run.state
    snapshots = state.snapshots
    last = next((s for s in reversed(snapshots) if s.token_id == token.id), None)
    if last is not None and last.task_id == node.id and last.success is False:
        last.success = None  # a retry of the failed step: the snapshot before its first attempt stands
        last.executed_at = run.now
        return
    snapshots.append(
        StepSnapshot(
            position=len(snapshots) + 1,
            task_id=node.id,
            task_name=node.name,
            task_type=node_type(node.kind),
            token_id=token.id,
            variables=_copy_json(state.variables),
            tokens=_copy_tokens(state.tokens),
            completed_tasks=list(state.completed_tasks),
            executed_at=run.now,
        )
    )


def task_done(run: Run, token: Token, node: Node, *, success: bool) -> None:
    """Record how the step that ran `node` ended (completion or failure), in the snapshot and the history."""
    state = run.state
    if state.execution_mode is not _SUPERVISED:
        return
    for snapshot in reversed(state.snapshots):
        if snapshot.token_id == token.id and snapshot.task_id == node.id and snapshot.success is None:
            snapshot.success = success
            started = snapshot.executed_at or run.now
            snapshot.execution_time_ms = max(0.0, (run.now - started).total_seconds() * 1000)
            run.history.add(
                "StepCompleted",
                node=node,
                token=token,
                data={
                    "position": snapshot.position,
                    "executionTime": snapshot.execution_time_ms,
                    "success": success,
                    "variablesChanged": changed_names(snapshot.variables, state.variables),
                },
            )
            return


def note_side_effect(run: Run, token: Token, node: Node, text: str) -> None:
    """A step reached outside the instance (a service call): stepping back cannot undo it."""
    if run.state.execution_mode is not _SUPERVISED:
        return
    for snapshot in reversed(run.state.snapshots):
        if snapshot.token_id == token.id and snapshot.task_id == node.id:
            snapshot.side_effects.append(text)
            return


def _require_supervised(run: Run) -> None:
    state = run.state
    if state.status in (InstanceStatus.COMPLETED, InstanceStatus.CANCELLED):
        shown = state.status.value
        raise InvalidStateForCommand(f"Instance '{state.instance_guid}' is {shown}; it cannot step.")
    if state.execution_mode is not ExecutionMode.SUPERVISED:
        raise InvalidStateForCommand(
            f"Instance '{state.instance_guid}' is not in supervised mode; "
            "switch it with SetExecutionModeCommand."
        )


# -- stepping forward ------------------------------------------------------------------------------


def step_forward(
    run: Run, *, token_id: int | None, actor: str | None, stopwatch: Stopwatch | None = None
) -> None:
    _require_supervised(run)
    paused = [t for t in run.state.tokens if t.state is TokenState.ACTIVE and kind_of(t) == PAUSE]
    if token_id is not None:
        chosen = next((t for t in paused if t.id == token_id), None)
        if chosen is None:
            raise InvalidStateForCommand(f"Token {token_id} is not paused before a task.")
    elif paused:
        chosen = paused[0]  # the oldest: a fresh token from a step back holds its lineage's slot
    else:
        raise InvalidStateForCommand(
            f"No task is paused in instance '{run.state.instance_guid}'; "
            "it waits for a signal, a service call or a failed task to be handled."
        )
    node = run.node_of(chosen)
    run.history.add("StepForward", node=node, token=chosen, actor=actor,
                    data={"position": len(run.state.snapshots) + 1})
    first_event = len(run.history.events)
    started = stopwatch() if stopwatch is not None else None
    release(run, chosen, node)
    elapsed = max(0.0, stopwatch() - started) if stopwatch is not None and started is not None else None
    _finish_in_step(run.history.events[first_event:], run.state.snapshots, chosen, node, actor, elapsed)


def _finish_in_step(
    events: list[HistoryEvent], snapshots: list[StepSnapshot], token: Token, node: Node,
    actor: str | None, elapsed: float | None,
) -> None:
    """A task that finished within its step command: its time is what the engine spent on it, and
    the completion is the stepping operator's doing."""
    for event in events:
        if event.event_type == "StepCompleted" and event.token_id == token.id and event.node_id == node.id:
            event.actor = actor
            if elapsed is not None and event.data is not None:
                event.data["executionTime"] = elapsed
                for snapshot in reversed(snapshots):
                    if snapshot.token_id == token.id and snapshot.task_id == node.id:
                        snapshot.execution_time_ms = elapsed
                        break
            return


def release(run: Run, token: Token, node: Node) -> None:
    """Run the task a paused token stands before, without pausing it again."""
    from domain import behaviours

    token.blocked_on = None
    touch(token, run.now)
    run.released = token.id
    behaviours.execute(run, token, node, gate=False)
    run.released = None


# -- stepping back ---------------------------------------------------------------------------------


def _same_place(before: Token, now: Token) -> bool:
    """The token has not moved since `before` was copied (versions aside: a restore bumps them)."""
    return (
        before.current_node_id == now.current_node_id
        and before.process_key == now.process_key
        and before.state is now.state
        and kind_of(before) == kind_of(now)
        and len(before.nodes_action_states) == len(now.nodes_action_states)
    )


def _lineage(run: Run, moved: Token) -> set[int]:
    """The moved token and the tokens above it (split parents, scope holders): the step may move those."""
    found = {moved.id}
    parent = run.table.parent(moved)
    while parent is not None:
        found.add(parent.id)
        parent = run.table.parent(parent)
    return found


def _where(token: Token) -> str:
    return f"'{token.current_node_id}'" + (f" ({token.current_node_name})" if token.current_node_name
                                            and token.current_node_name != token.current_node_id else "")


def _refuse_merges_and_exits(run: Run, snapshot: StepSnapshot, moved: Token) -> None:
    """A token merged at a join or gone out of its subprocess took other tokens with it: refuse."""
    if moved.state is not TokenState.INACTIVE or is_pending_join(moved):
        return
    where = run.node_of(moved)
    if where.kind in GATEWAY_KINDS:
        raise InvalidStateForCommand(
            f"Cannot step back across the join at {gateways.label(where)}: other branches were merged there."
        )
    if moved.scope is not None or moved.process_key is not None:
        raise InvalidStateForCommand(
            f"Cannot step back out of the subprocess that task '{snapshot.task_id}' belongs to: it has ended."
        )


def _refuse_outside_moves(run: Run, snapshot: StepSnapshot, lineage: set[int]) -> None:
    """Refuse when a branch waiting on the outside at the step's start has moved since."""
    for before in snapshot.tokens:
        if before.id in lineage or before.state is not TokenState.ACTIVE or kind_of(before) not in _OUTSIDE_WAITS:
            continue
        now = run.table.by_id.get(before.id)
        if now is None or _same_place(before, now):
            continue
        if now.state in _KILLED:
            if kind_of(before) == JOB:
                raise InvalidStateForCommand(
                    f"Cannot step back over task '{snapshot.task_id}': it stopped the service call of another "
                    f"branch at {_where(before)}, and stepping back would have to call that service again."
                )
            continue  # stopped by this step (terminate end, error boundary): restoring brings it back
        raise InvalidStateForCommand(
            f"Cannot step back over task '{snapshot.task_id}': since it ran, another branch moved on from "
            f"{_where(before)} (a signal, service reply, timer or retry); stepping back would undo that too."
        )


def _moved_from(run: Run, moved: Token, lineage: set[int], previous_ids: set[int]) -> Token:
    """Where the step's token stands now: itself, or what carries on for it (a join's continuation,
    a scope holder that left its subprocess, split children)."""
    if moved.state is TokenState.ACTIVE:
        return moved
    for token in run.state.tokens:
        carries_on = token.id not in previous_ids or (token.id in lineage and token.id != moved.id)
        if carries_on and token.state is TokenState.ACTIVE:
            return token
    return moved


def _no_step_message(run: Run) -> str:
    graph = run.index_for(None).graph
    done_before = any(graph.nodes[t].is_task if t in graph.nodes else True for t in run.state.completed_tasks)
    if done_before:
        return "No step has been taken since supervised mode began; tasks run before it cannot be stepped back."
    return "The instance is at its first task; there is no step to go back to."


def step_backward(run: Run, *, actor: str | None) -> None:
    _require_supervised(run)
    state = run.state
    if not state.snapshots:
        raise InvalidStateForCommand(_no_step_message(run))
    snapshot = state.snapshots[-1]
    moved = run.table.by_id.get(snapshot.token_id)
    if moved is None:
        raise InvalidStateForCommand("The token of the last step is gone; stepping back is not possible.")
    _refuse_merges_and_exits(run, snapshot, moved)
    lineage = _lineage(run, moved)
    _refuse_outside_moves(run, snapshot, lineage)
    before = {t.id: t for t in snapshot.tokens}
    now_at = _moved_from(run, moved, lineage, set(before))
    moved_from = {"taskId": now_at.current_node_id, "taskName": now_at.current_node_name}

    # Jobs and timers of tokens that will not be back in the same wait are no longer wanted.
    for token in state.tokens:
        if is_alive(token) and kind_of(token) in (JOB, TIMER):
            old = before.get(token.id)
            if token.id == moved.id or old is None or not _same_place(old, token):
                run.cancel_jobs(token)
    current = {t.id: t for t in state.tokens}
    restored = _copy_tokens(snapshot.tokens)
    for n, token in enumerate(restored):
        was = current.get(token.id)
        if was is not None and token.id != moved.id and kind_of(token) == JOB and _same_place(token, was):
            restored[n] = was  # still on the same call: keep what the worker noted on it since
            continue
        if was is not None and was.version != token.version:
            token.version = was.version  # put back as it was: that is one more change
            touch(token, run.now)
            if kind_of(token) == TIMER and token.blocked_on is not None and token.blocked_on.due_at is not None \
                    and not _same_place(token, was):
                run.effects.append(ScheduleTimer(token_id=token.id, node_id=token.current_node_id,
                                                 due_at=token.blocked_on.due_at))
    aborted = msgspec.structs.replace(moved, state=TokenState.ABORTED, blocked_on=None)
    touch(aborted, run.now)
    newer = [t for t in state.tokens if t.id not in before and t.id != moved.id]
    for token in newer:
        if is_alive(token):
            token.state = TokenState.ABORTED
            token.blocked_on = None
            touch(token, run.now)
    original = before[moved.id]
    fresh = msgspec.structs.replace(
        original,
        id=state.next_token_id,
        uuid=run.ids.new_id(),
        version=1,
        date_updated=run.now,
        blocked_on=None,
    )
    state.next_token_id += 1
    task = run.index_for(fresh.process_key).graph.nodes[snapshot.task_id]
    block(fresh, run.now, NodeStatus.ARRIVED, _pause(task))
    kept: list[Token] = []
    for token in restored:
        if token.id == moved.id:
            kept.append(fresh)
            continue
        if token.parent_token_id == moved.id:
            token.parent_token_id = fresh.id
        kept.append(token)
    state.tokens[:] = [*kept, *sorted([aborted, *newer], key=lambda t: t.id)]
    run.rebuild_table()
    changed = changed_names(snapshot.variables, state.variables)
    state.variables = _copy_json(snapshot.variables)
    state.completed_tasks = list(snapshot.completed_tasks)
    state.error = None
    state.snapshots.pop()
    _rename(state.snapshots, moved.id, fresh.id)
    run.history.add(
        "StepBackward",
        node=task,
        token=fresh,
        actor=actor,
        data={"movedFrom": moved_from, "abortedTokenId": moved.id},
    )
    run.history.add(
        "StepUndone",
        node=task,
        token=fresh,
        actor=actor,
        data={
            "position": snapshot.position,
            "executedAt": snapshot.executed_at.isoformat() if snapshot.executed_at else None,
            "executionTime": snapshot.execution_time_ms,
            "success": snapshot.success,
            "variablesChanged": changed,
            "sideEffectsNotUndone": list(snapshot.side_effects),
        },
    )


def _rename(snapshots: list[StepSnapshot], old: int, new: int) -> None:
    """The fresh token carries on the lineage of the one it replaced, in the older snapshots too."""
    for snapshot in snapshots:
        if snapshot.token_id == old:
            snapshot.token_id = new
        for token in snapshot.tokens:
            if token.id == old:
                token.id = new
            if token.parent_token_id == old:
                token.parent_token_id = new


# -- switching modes -------------------------------------------------------------------------------


def set_mode(run: Run, mode: ExecutionMode, *, actor: str | None) -> None:
    state = run.state
    if state.execution_mode is mode:
        return
    state.execution_mode = mode
    state.snapshots.clear()  # snapshots are only exact while every task is stepped
    run.history.add("ExecutionModeChanged", actor=actor, data={"executionMode": str(mode)})
    if mode is ExecutionMode.UNSUPERVISED:
        for token in [t for t in state.tokens if t.state is TokenState.ACTIVE and kind_of(t) == PAUSE]:
            release(run, token, run.node_of(token))
