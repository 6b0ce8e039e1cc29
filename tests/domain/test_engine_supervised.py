"""Supervised mode: pause before each task, step forward, step back from snapshots, switch modes."""

from __future__ import annotations

from typing import Any

import pytest

from domain import engine, view
from domain.errors import InvalidStateForCommand
from domain.model import Definition
from domain.state import ExecutionMode, InstanceState, InstanceStatus, TokenState
from domain.transition import CallService, CancelJobs
from tests.domain.engine_support import (
    LATER,
    NOW,
    Ids,
    begin,
    chain,
    end,
    events_of,
    gateway,
    model,
    script,
    service,
    start,
    subprocess,
    token_at,
    user,
)

SUPERVISED = ExecutionMode.SUPERVISED


def _sequence() -> Definition:
    return model(
        start(),
        script("A", "x = x + 1;", name="First"),
        script("B", "x = x * 10; y = 'b';"),
        script("C", "z = true;"),
        end(),
        chain("start", "A", "B", "C", "end"),
    )


def _forward(definition: Definition, state: InstanceState, **kwargs: Any) -> InstanceState:
    return engine.step_forward(definition, state, now=NOW, ids=Ids(), **kwargs).state


def _backward(definition: Definition, state: InstanceState) -> InstanceState:
    return engine.step_backward(definition, state, now=NOW, ids=Ids()).state


def test_supervised_instance_pauses_before_every_task() -> None:
    definition = _sequence()
    state = begin(definition, {"x": 1}, execution_mode=SUPERVISED).state
    assert state.status is InstanceStatus.WAITING
    token = token_at(state, "A")
    assert token.blocked_on is not None and token.blocked_on.kind == "supervisedPause"
    assert token.blocked_on.description == "Paused before task 'A' (First)"
    assert state.variables == {"x": 1}
    assert view.position(state) == 1 and view.previous_task(state) is None
    [wait] = view.waiting_tasks(definition, state)
    assert (wait.task_id, wait.kind) == ("A", "supervisedPause")
    assert [a["action"] for a in view.next_actions(definition, state)] == [
        "stepForward",
        "stepBackward",
        "cancel",
    ]

    state = _forward(definition, state)
    assert state.variables == {"x": 2}
    assert token_at(state, "B").blocked_on is not None
    assert view.position(state) == 2
    assert view.previous_task(state) == {
        "taskId": "A",
        "taskName": "First",
        "taskType": "ScriptTask",
        "executionTime": 0.0,
        "success": True,
    }
    state = _forward(definition, state)
    state = _forward(definition, state)
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables == {"x": 20, "y": "b", "z": True}
    assert [s.task_id for s in state.snapshots] == ["A", "B", "C"]


def test_step_backward_restores_variables_and_replaces_the_moved_token() -> None:
    definition = _sequence()
    state = begin(definition, {"x": 1}, execution_mode=SUPERVISED).state
    before_b = _forward(definition, state)
    at_c = _forward(definition, before_b)
    assert at_c.variables == {"x": 20, "y": "b"}
    moved = token_at(at_c, "C")

    transition = engine.step_backward(definition, at_c, now=LATER, ids=Ids())
    back = transition.state
    assert back.variables == before_b.variables == {"x": 2}
    assert back.completed_tasks == before_b.completed_tasks
    aborted = next(t for t in back.tokens if t.id == moved.id)
    assert aborted.state is TokenState.ABORTED and aborted.version > moved.version
    fresh = token_at(back, "B")
    assert fresh.id not in {t.id for t in at_c.tokens}
    assert fresh.blocked_on is not None and fresh.blocked_on.kind == "supervisedPause"
    assert view.position(back) == 2
    [event] = events_of(transition, "StepBackward")
    assert event.data == {"movedFrom": {"taskId": "C", "taskName": ""}, "abortedTokenId": moved.id}

    first = _backward(definition, back)
    assert first.variables == {"x": 1}
    assert token_at(first, "A").blocked_on is not None
    with pytest.raises(InvalidStateForCommand) as caught:
        _backward(definition, first)
    assert caught.value.message == "The instance is at its first task; there is no step to go back to."

    # forward again from the restored state gives the same variables as the first time
    again = _forward(definition, _forward(definition, _forward(definition, first)))
    assert again.status is InstanceStatus.COMPLETED
    assert again.variables == {"x": 20, "y": "b", "z": True}


def _fork_join() -> Definition:
    return model(
        start(),
        gateway("parallel", "fork"),
        script("A", "a = 1;"),
        script("B", "b = 1;"),
        gateway("parallel", "join"),
        script("C", "c = 1;"),
        end(),
        chain("start", "fork"),
        chain("fork", "A", "join", prefix="p"),
        chain("fork", "B", "join", prefix="q"),
        chain("join", "C", "end", prefix="r"),
    )


def test_token_id_chooses_which_branch_steps_and_join_is_not_stepped_back_across() -> None:
    definition = _fork_join()
    state = begin(definition, execution_mode=SUPERVISED).state
    a, b = token_at(state, "A"), token_at(state, "B")
    assert a.id < b.id
    state = _forward(definition, state, token_id=b.id)
    assert state.variables == {"b": 1}
    with pytest.raises(InvalidStateForCommand, match=rf"Token {b.id} is not paused before a task\."):
        _forward(definition, state, token_id=b.id)
    pending = _forward(definition, state)  # A, the oldest paused token
    assert pending.variables == {"a": 1, "b": 1}
    assert token_at(pending, "C").blocked_on is not None
    with pytest.raises(InvalidStateForCommand) as caught:
        _backward(definition, pending)
    assert (
        caught.value.message
        == "Cannot step back across the join at 'join': other branches were merged there."
    )


def test_stepping_back_a_branch_waiting_at_the_join_is_allowed() -> None:
    definition = _fork_join()
    state = begin(definition, execution_mode=SUPERVISED).state
    one = _forward(definition, state)
    back = _backward(definition, one)
    assert back.variables == {}
    assert (
        len([t for t in back.tokens if t.blocked_on is not None and t.blocked_on.kind == "supervisedPause"])
        == 2
    )
    done = _forward(definition, _forward(definition, _forward(definition, back)))
    assert done.status is InstanceStatus.COMPLETED and done.variables == {"a": 1, "b": 1, "c": 1}


def test_stepping_back_out_of_a_subprocess_is_refused() -> None:
    definition = model(
        start(),
        subprocess(
            "sub", start("s0"), script("inner", "i = 1;"), end("s1"), chain("s0", "inner", "s1", prefix="i")
        ),
        script("after", "after = 1;"),
        end(),
        chain("start", "sub", "after", "end"),
    )
    state = begin(definition, execution_mode=SUPERVISED).state
    assert token_at(state, "inner").blocked_on is not None
    state = _forward(definition, state)
    assert token_at(state, "after").blocked_on is not None
    with pytest.raises(InvalidStateForCommand, match="Cannot step back out of the subprocess"):
        _backward(definition, state)


def test_service_step_calls_out_and_reports_its_time() -> None:
    definition = model(
        start(),
        service("call", props={"Endpoint": "https://x.test"}),
        script("after", "a = 1;"),
        end(),
        chain("start", "call", "after", "end"),
    )
    state = begin(definition, execution_mode=SUPERVISED).state
    stepped = engine.step_forward(definition, state, now=NOW, ids=Ids())
    [call] = stepped.effects
    assert isinstance(call, CallService)
    assert stepped.state.status is InstanceStatus.RUNNING
    assert stepped.state.snapshots[0].side_effects == ["POST https://x.test"]
    done = engine.complete_task(
        definition, stepped.state, now=LATER, ids=Ids(), token_id=call.token_id, result={}
    )
    previous = view.previous_task(done.state)
    assert previous is not None and previous["success"] is True and previous["executionTime"] == 300000.0
    # stepping back while the call is still pending cancels its job
    undone = engine.step_backward(definition, stepped.state, now=NOW, ids=Ids())
    assert undone.effects == [CancelJobs(token_id=call.token_id, node_id="call")]


def test_user_task_still_waits_for_its_signal_after_stepping() -> None:
    definition = model(
        start(), user("u"), script("after", "a = 1;"), end(), chain("start", "u", "after", "end")
    )
    state = _forward(definition, begin(definition, execution_mode=SUPERVISED).state)
    assert token_at(state, "u").blocked_on.kind == "userTask"
    with pytest.raises(InvalidStateForCommand, match="No task is paused"):
        _forward(definition, state)
    signalled = engine.complete_task(definition, state, now=NOW, ids=Ids()).state
    assert token_at(signalled, "after").blocked_on.kind == "supervisedPause"


def test_switching_modes() -> None:
    definition = _sequence()
    paused = begin(definition, {"x": 1}, execution_mode=SUPERVISED).state
    released = engine.set_execution_mode(definition, paused, ExecutionMode.UNSUPERVISED, now=NOW, ids=Ids())
    assert released.state.status is InstanceStatus.COMPLETED
    assert released.state.variables == {"x": 20, "y": "b", "z": True}
    assert released.state.snapshots == []
    assert released.events[0].event_type == "ExecutionModeChanged"

    with_user = model(start(), user("u"), script("s", "s = 1;"), end(), chain("start", "u", "s", "end"))
    waiting = begin(with_user).state
    with pytest.raises(InvalidStateForCommand, match="not in supervised mode"):
        _forward(with_user, waiting)
    supervised = engine.set_execution_mode(with_user, waiting, SUPERVISED, now=NOW, ids=Ids()).state
    assert supervised.execution_mode is SUPERVISED
    after = engine.complete_task(with_user, supervised, now=NOW, ids=Ids()).state
    assert token_at(after, "s").blocked_on.kind == "supervisedPause"
    same = engine.set_execution_mode(with_user, after, SUPERVISED, now=NOW, ids=Ids())
    assert same.events == [] and same.state.execution_mode is SUPERVISED


def test_retry_in_supervised_mode_reruns_the_step_without_pausing_again() -> None:
    definition = model(
        start(),
        script("A", "if (!ok) { throw new Error('no'); } done = 1;"),
        end(),
        chain("start", "A", "end"),
    )
    failed = _forward(definition, begin(definition, {"ok": False}, execution_mode=SUPERVISED).state)
    assert failed.status is InstanceStatus.ERROR
    assert failed.snapshots[0].success is False
    retried = engine.retry_failed(
        definition, failed, updated_variables={"ok": True}, comment=None, actor=None, now=NOW, ids=Ids()
    ).state
    assert retried.status is InstanceStatus.COMPLETED
    assert len(retried.snapshots) == 1 and retried.snapshots[0].success is True
