"""Stepping back: what a step set off is undone with it, other branches' waits are left alone,
and moves made outside stepping are never silently undone."""

from __future__ import annotations

from typing import Any

import pytest

from domain import engine, job_progress, view
from domain.errors import InvalidStateForCommand
from domain.model import Definition
from domain.state import ExecutionMode, InstanceState, InstanceStatus, TokenState
from domain.transition import CallService, CancelJobs, ScheduleTimer, Transition
from tests.domain.engine_support import (
    LATER,
    NOW,
    Ids,
    begin,
    chain,
    document,
    end,
    error,
    error_boundary,
    events_of,
    gateway,
    model,
    process,
    script,
    service,
    start,
    subprocess,
    token_at,
    user,
)

SUPERVISED = ExecutionMode.SUPERVISED


def _start(definition: Definition, variables: dict[str, Any] | None = None) -> InstanceState:
    return begin(definition, variables, execution_mode=SUPERVISED).state


def _forward(definition: Definition, state: InstanceState, **kwargs: Any) -> InstanceState:
    return engine.step_forward(definition, state, now=NOW, ids=Ids(), **kwargs).state


def _back(definition: Definition, state: InstanceState) -> Transition:
    return engine.step_backward(definition, state, now=LATER, ids=Ids())


def _branches(left: str, right: str) -> Definition:
    """start → fork → (left → L2) ‖ (right → R2) → join → end."""
    return model(
        start(),
        gateway("parallel", "fork"),
        left,
        script("L2", "l2 = 1;"),
        right,
        script("R2", "r2 = 1;"),
        gateway("parallel", "join"),
        end(),
        chain("start", "fork"),
        chain("fork", "L", "L2", "join", prefix="l"),
        chain("fork", "R", "R2", "join", prefix="r"),
        chain("join", "end", prefix="j"),
    )


def _paused(state: InstanceState) -> list[str]:
    return [t.current_node_id for t in state.tokens
            if t.state is TokenState.ACTIVE and t.blocked_on is not None and t.blocked_on.kind == "supervisedPause"]


def test_stepping_back_leaves_another_branch_waiting_for_its_signal() -> None:
    definition = _branches(user("L"), script("R", "r = 1;"))
    state = _start(definition)
    left = token_at(state, "L")
    state = _forward(definition, state, token_id=left.id)  # L now waits for its signal
    waiting = token_at(state, "L")
    state = _forward(definition, state)  # R runs
    assert state.variables == {"r": 1}
    back = _back(definition, state).state
    assert back.variables == {}
    assert token_at(back, "L") == waiting  # untouched: same wait, same version
    assert _paused(back) == ["R"]
    # the signal still reaches L, and stepping back over L (its own step) is fine
    signalled = engine.complete_task(definition, back, now=NOW, ids=Ids(), task_id="L", result={"ok": 1})
    assert "lastUserTaskResult" in signalled.state.variables
    undone = _back(definition, signalled.state).state
    assert undone.variables == {}
    assert sorted(_paused(undone)) == ["L", "R"]


def test_a_branch_moved_by_a_signal_since_the_step_blocks_stepping_back() -> None:
    definition = _branches(user("L"), script("R", "r = 1;"))
    state = _start(definition)
    state = _forward(definition, state, token_id=token_at(state, "L").id)
    state = _forward(definition, state)  # R runs while L waits
    state = engine.complete_task(definition, state, now=NOW, ids=Ids(), task_id="L", result={"ok": 1}).state
    with pytest.raises(InvalidStateForCommand) as caught:
        _back(definition, state)
    assert caught.value.message == (
        "Cannot step back over task 'R': since it ran, another branch moved on from 'L' "
        "(a signal, service reply, timer or retry); stepping back would undo that too."
    )


def test_a_service_call_in_flight_on_another_branch_keeps_its_job() -> None:
    definition = _branches(service("L", props={"Endpoint": "https://svc.test/a"}), script("R", "r = 1;"))
    state = _start(definition)
    sent = engine.step_forward(definition, state, now=NOW, ids=Ids(), token_id=token_at(state, "L").id)
    [call] = sent.effects
    assert isinstance(call, CallService)
    state = _forward(definition, sent.state)  # R runs while the call is out
    # the worker notes a failed attempt on L's token meanwhile (it stays on the same call)
    state = job_progress.note_job_attempt(state, token_id=call.token_id, node_id="L", attempt=1, max_attempts=3,
                                          next_attempt_at=LATER, last_error="503", now=NOW).state
    noted = token_at(state, "L")
    undone = _back(definition, state)
    assert undone.effects == []  # the call of L is still wanted
    assert token_at(undone.state, "L") == noted  # with what the worker noted on it
    replied = engine.complete_task(definition, undone.state, now=NOW, ids=Ids(), token_id=call.token_id,
                                   result={"v": 1})
    assert replied.state.variables["lastServiceResult"] == {"v": 1}


def test_stepping_back_a_service_step_reports_the_call_it_cannot_undo() -> None:
    definition = model(start(), service("S", props={"Endpoint": "https://svc.test/a"}), script("T"), end(),
                       chain("start", "S", "T", "end"))
    state = _forward(definition, _start(definition))
    undone = _back(definition, state)
    [event] = events_of(undone, "StepUndone")
    assert event.data["sideEffectsNotUndone"] == ["POST https://svc.test/a"]
    assert event.data["success"] is None and event.data["position"] == 1
    assert undone.effects == [CancelJobs(token_id=token_at(state, "S").id, node_id="S")]


def test_a_fresh_token_takes_the_slot_of_the_one_it_replaces() -> None:
    definition = _branches(script("L", "l = 1;"), script("R", "r = 1;"))
    state = _start(definition)
    assert _paused(state) == ["L", "R"]
    state = _forward(definition, state)  # the oldest: L
    assert _paused(state) == ["L2", "R"]
    back = _back(definition, state).state
    assert _paused(back) == ["L", "R"]
    again = _forward(definition, back)  # the default is L's lineage again, not R
    assert again.variables == {"l": 1}


def test_stepping_back_over_a_split_aborts_the_branches_it_started() -> None:
    definition = model(
        start(),
        script("A", "a = 1;"),
        gateway("parallel", "fork"),
        script("B"),
        script("C"),
        gateway("parallel", "join"),
        end(),
        chain("start", "A", "fork"),
        chain("fork", "B", "join", prefix="p"),
        chain("fork", "C", "join", prefix="q"),
        chain("join", "end", prefix="r"),
    )
    state = _forward(definition, _start(definition))
    children = [t.id for t in state.tokens if t.current_node_id in ("B", "C")]
    undone = _back(definition, state)
    [event] = events_of(undone, "StepBackward")
    assert event.data["movedFrom"] == {"taskId": "B", "taskName": ""}
    back = undone.state
    assert all(t.state is TokenState.ABORTED for t in back.tokens if t.id in children)
    assert _paused(back) == ["A"] and back.variables == {}
    assert view.total_tasks_on_path(definition, back) == 3


def test_a_caught_error_is_undone_with_the_branches_it_stopped_and_their_timers() -> None:
    timer = (
        '<intermediateCatchEvent id="wait"><timerEventDefinition><timeDuration>PT1H</timeDuration>'
        "</timerEventDefinition></intermediateCatchEvent>"
    )
    definition = document(
        error("Err", "E1"),
        process(
            start(),
            subprocess(
                "sub",
                start("s0"),
                gateway("parallel", "fork"),
                script("boom", "throw new BpmnError('E1', 'no');"),
                timer,
                end("e1"),
                end("e2"),
                chain("s0", "fork", prefix="i"),
                chain("fork", "boom", "e1", prefix="a"),
                chain("fork", "wait", "e2", prefix="b"),
            ),
            error_boundary("caught", "sub", error_ref="Err"),
            script("handle", "handled = true;"),
            end(),
            chain("start", "sub", "end"),
            chain("caught", "handle", "end", prefix="h"),
        ),
    )
    state = _start(definition)
    waiting = token_at(state, "wait")
    assert waiting.blocked_on is not None and waiting.blocked_on.due_at is not None
    thrown = engine.step_forward(definition, state, now=NOW, ids=Ids())
    assert _paused(thrown.state) == ["handle"]
    assert CancelJobs(token_id=waiting.id, node_id="wait") in thrown.effects
    undone = _back(definition, thrown.state)
    back = undone.state
    assert undone.effects == [ScheduleTimer(token_id=waiting.id, node_id="wait", due_at=waiting.blocked_on.due_at)]
    restored = token_at(back, "wait")
    assert restored.blocked_on == waiting.blocked_on and restored.version > waiting.version
    assert _paused(back) == ["boom"] and back.status is InstanceStatus.WAITING
    assert back.variables == state.variables


def test_stepping_back_with_a_failed_task_in_another_branch_that_was_retried_is_refused() -> None:
    definition = _branches(script("L", "if (!fixed) { throw new Error('down'); }"), script("R", "r = 1;"))
    state = _start(definition, {"fixed": False})
    state = _forward(definition, state, token_id=token_at(state, "L").id)
    assert state.status is InstanceStatus.ERROR
    state = _forward(definition, state)  # R steps while L is failed
    retried = engine.retry_failed(definition, state, updated_variables={"fixed": True}, comment=None, actor=None,
                                  now=NOW, ids=Ids()).state
    assert retried.status is InstanceStatus.WAITING
    with pytest.raises(InvalidStateForCommand, match="another branch moved on from 'L'"):
        _back(definition, retried)
