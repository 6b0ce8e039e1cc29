"""Supervised mode (step debugging): pause before every task, step forward, step back.

In supervised mode a token that reaches a task stops before running it (blocked on kind
"supervisedPause"; the instance is `waiting`). Stepping forward releases exactly one paused
token: a snapshot of the variables, tokens and completed tasks is taken, the task runs, and the
run continues until every token waits again. Stepping back undoes the most recent step from
its snapshot: the variables and tokens are put back exactly, the token that had moved is
ABORTED and a fresh token takes its place, paused before the task again. Stepping back is
refused at the first task, after the stepped token was merged by a parallel join, and after it
left a subprocess (those moves involve tokens the step did not own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from domain.errors import InvalidStateForCommand
from domain.history import node_type
from domain.model import GATEWAY_KINDS, Node
from domain.state import (
    BlockedOn,
    ExecutionMode,
    InstanceStatus,
    NodeStatus,
    StepSnapshot,
    Token,
    TokenState,
)
from domain.tokens import JOB, PAUSE, TIMER, block, is_alive, is_pending_join, kind_of, touch

if TYPE_CHECKING:
    from domain.runner import Run

_tokens_type = list[Token]


def _copy_tokens(tokens: list[Token]) -> list[Token]:
    return msgspec.convert(msgspec.to_builtins(tokens), _tokens_type)


def _copy_json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def _label(node: Node) -> str:
    return f"'{node.id}' ({node.name})" if node.name and node.name != node.id else f"'{node.id}'"


def may_run(run: Run, token: Token, node: Node) -> bool:
    """Called before a task runs: pause it in supervised mode unless this step released it."""
    state = run.state
    if state.execution_mode is not ExecutionMode.SUPERVISED:
        return True
    if run.released == token.id:
        run.released = None
        _snapshot(run, token, node)
        return True
    blocked = BlockedOn(kind=PAUSE, task_id=node.id, description=f"Paused before task {_label(node)}")
    block(token, run.now, NodeStatus.ARRIVED, blocked)
    return False


def _snapshot(run: Run, token: Token, node: Node) -> None:
    state = run.state
    snapshots = state.snapshots
    last = snapshots[-1] if snapshots else None
    if last is not None and last.token_id == token.id and last.task_id == node.id and last.success is False:
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
    state.supervised_position = len(snapshots)


def task_done(run: Run, token: Token, node: Node, *, success: bool) -> None:
    """Record how the step that ran `node` ended (completion or failure)."""
    state = run.state
    if state.execution_mode is not ExecutionMode.SUPERVISED:
        return
    for snapshot in reversed(state.snapshots):
        if snapshot.token_id == token.id and snapshot.task_id == node.id and snapshot.success is None:
            snapshot.success = success
            started = snapshot.executed_at or run.now
            snapshot.execution_time_ms = max(0.0, (run.now - started).total_seconds() * 1000)
            return


def note_side_effect(run: Run, token: Token, node: Node, text: str) -> None:
    """A step reached outside the instance (a service call): stepping back cannot undo it."""
    if run.state.execution_mode is not ExecutionMode.SUPERVISED:
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


def step_forward(run: Run, *, token_id: int | None, actor: str | None) -> None:
    _require_supervised(run)
    paused = [t for t in run.state.tokens if t.state is TokenState.ACTIVE and kind_of(t) == PAUSE]
    if token_id is not None:
        chosen = next((t for t in paused if t.id == token_id), None)
        if chosen is None:
            raise InvalidStateForCommand(f"Token {token_id} is not paused before a task.")
    elif paused:
        chosen = paused[0]
    else:
        raise InvalidStateForCommand(
            f"No task is paused in instance '{run.state.instance_guid}'; "
            "it waits for a signal, a service call or a failed task to be handled."
        )
    node = run.node_of(chosen)
    run.history.add("StepForward", node=node, token=chosen, actor=actor)
    release(run, chosen, node)


def release(run: Run, token: Token, node: Node) -> None:
    """Run the task a paused token stands before, without pausing it again."""
    from domain import behaviours

    token.blocked_on = None
    touch(token, run.now)
    run.released = token.id
    behaviours.execute(run, token, node, gate=False)
    run.released = None


def step_backward(run: Run, *, actor: str | None) -> None:
    _require_supervised(run)
    state = run.state
    if not state.snapshots:
        raise InvalidStateForCommand("The instance is at its first task; there is no step to go back to.")
    snapshot = state.snapshots[-1]
    moved = run.table.by_id.get(snapshot.token_id)
    if moved is None:
        raise InvalidStateForCommand("The token of the last step is gone; stepping back is not possible.")
    where = run.node_of(moved)
    if moved.state is TokenState.INACTIVE and not is_pending_join(moved):
        if where.kind in GATEWAY_KINDS:
            raise InvalidStateForCommand(
                f"Cannot step back across the join at {_label(where)}: other branches were merged there."
            )
        if moved.scope is not None or moved.process_key is not None:
            raise InvalidStateForCommand(
                f"Cannot step back out of the subprocess that task '{snapshot.task_id}' belongs to: "
                "it has ended."
            )
    previous_ids = {t.id for t in snapshot.tokens}
    for token in state.tokens:
        if is_alive(token) and kind_of(token) in (JOB, TIMER):
            run.cancel_jobs(token)
    current_versions = {t.id: t.version for t in state.tokens}
    restored = _copy_tokens(snapshot.tokens)
    for token in restored:
        now_version = current_versions.get(token.id)
        if now_version is not None and now_version != token.version:
            token.version = now_version  # put back as it was: that is one more change
            touch(token, run.now)
    aborted = msgspec.structs.replace(moved, state=TokenState.ABORTED, blocked_on=None)
    touch(aborted, run.now)
    newer = [t for t in state.tokens if t.id not in previous_ids and t.id != moved.id]
    for token in newer:
        if is_alive(token):
            token.state = TokenState.ABORTED
            token.blocked_on = None
            touch(token, run.now)
    original = next(t for t in restored if t.id == moved.id)
    restored = [t for t in restored if t.id != moved.id]
    fresh = msgspec.structs.replace(
        original,
        id=state.next_token_id,
        uuid=run.ids.new_id(),
        version=1,
        date_updated=run.now,
    )
    state.next_token_id += 1
    task = run.index_for(fresh.process_key).graph.nodes[snapshot.task_id]
    block(fresh, run.now, NodeStatus.ARRIVED,
          BlockedOn(kind=PAUSE, task_id=task.id, description=f"Paused before task {_label(task)}"))
    state.tokens[:] = sorted([*restored, aborted, *newer, fresh], key=lambda t: t.id)
    run.rebuild_table()
    state.variables = _copy_json(snapshot.variables)
    state.completed_tasks = list(snapshot.completed_tasks)
    state.error = None
    state.snapshots.pop()
    _rename(state.snapshots, moved.id, fresh.id)
    state.supervised_position = len(state.snapshots)
    run.history.add(
        "StepBackward",
        node=task,
        token=fresh,
        actor=actor,
        data={"movedFrom": {"taskId": moved.current_node_id, "taskName": moved.current_node_name},
              "abortedTokenId": moved.id},
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
        snapshot.tokens.sort(key=lambda t: t.id)


def set_mode(run: Run, mode: ExecutionMode, *, actor: str | None) -> None:
    state = run.state
    if state.execution_mode is mode:
        return
    state.execution_mode = mode
    state.snapshots.clear()
    state.supervised_position = 0
    run.history.add("ExecutionModeChanged", actor=actor, data={"executionMode": str(mode)})
    if mode is ExecutionMode.UNSUPERVISED:
        for token in [t for t in state.tokens if t.state is TokenState.ACTIVE and kind_of(t) == PAUSE]:
            release(run, token, run.node_of(token))
