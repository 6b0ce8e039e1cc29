"""Supervised mode (step debugging): StepForward, StepBackward, SetExecutionMode.

Step commands never retry a lost compare-and-set race on the winner's state: that would take a
second step nobody asked for. The loser is answered with VersionConflict ("99") instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from commands.instances import SetExecutionMode, StepBackward, StepForward
from domain import engine
from domain.engine import ProcessLookup
from domain.model import Definition
from domain.state import ExecutionMode, HistoryEvent, InstanceState, StepSnapshot
from domain.transition import Transition
from handlers.bus import Reply, RequestContext
from handlers.deps import Deps
from handlers.instance_steps import apply_step
from handlers.views import applied_view


def _event(transition: Transition, event_type: str) -> HistoryEvent | None:
    return next((e for e in transition.events if e.event_type == event_type), None)


async def step_forward(cmd: StepForward, ctx: RequestContext, deps: Deps) -> Reply:
    def step(definition: Definition, state: InstanceState, now: datetime, lookup: ProcessLookup) -> Transition:
        return engine.step_forward(
            definition, state, now=now, ids=deps.ids, token_id=cmd.token_id, actor=ctx.actor,
            lookup=lookup, limits=deps.limits, stopwatch=deps.stopwatch,
        )

    applied = await apply_step(deps, ctx, cmd.instance_guid, step, retry_on_conflict=False)
    data = applied_view(applied, now=deps.clock.now())
    return Reply("Stepped forward successfully", data)


def _undone_view(undone: StepSnapshot) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    previous = {
        "executedAt": undone.executed_at,
        "executionTime": undone.execution_time_ms,
        "success": undone.success,
    }
    effects = [
        {"taskId": undone.task_id, "taskName": undone.task_name, "taskType": undone.task_type, "effect": text}
        for text in undone.side_effects
    ]
    return previous, effects


async def step_backward(cmd: StepBackward, ctx: RequestContext, deps: Deps) -> Reply:
    undone: list[StepSnapshot] = []

    def step(definition: Definition, state: InstanceState, now: datetime, lookup: ProcessLookup) -> Transition:
        undone[:] = state.snapshots[-1:]  # the step this command undoes, as it was recorded
        return engine.step_backward(
            definition, state, now=now, ids=deps.ids, actor=ctx.actor, lookup=lookup, limits=deps.limits
        )

    applied = await apply_step(deps, ctx, cmd.instance_guid, step, retry_on_conflict=False)
    back = _event(applied.transition, "StepBackward")
    focus = back.token_id if back is not None else None
    data = applied_view(applied, now=deps.clock.now(), focus_token=focus)
    moved = back.data.get("movedFrom") if back is not None and back.data is not None else None
    data["movedFrom"] = moved
    previous, effects = _undone_view(undone[0]) if undone else ({}, [])
    task = data.get("currentTask")
    if task is not None and undone and task.get("taskId") == undone[0].task_id:
        task["previousExecution"] = previous
    data["sideEffectsNotUndone"] = effects
    return Reply("Stepped back successfully", data)


async def set_execution_mode(cmd: SetExecutionMode, ctx: RequestContext, deps: Deps) -> Reply:
    mode = ExecutionMode(cmd.execution_mode)

    def step(definition: Definition, state: InstanceState, now: datetime, lookup: ProcessLookup) -> Transition:
        return engine.set_execution_mode(
            definition, state, mode, now=now, ids=deps.ids, actor=ctx.actor, lookup=lookup, limits=deps.limits
        )

    # Retrying on fresh state is right here: the switch means the same whatever won the race.
    applied = await apply_step(deps, ctx, cmd.instance_guid, step)
    data = applied_view(applied, now=deps.clock.now())
    return Reply("Execution mode changed successfully", data)
