"""`totalTasks` in supervised mode: steps taken plus the tasks on the path ahead (domain/task_path.py)."""

from __future__ import annotations

from typing import Any

from domain import engine, view
from domain.model import Definition
from domain.state import ExecutionMode, InstanceState, InstanceStatus
from tests.domain.engine_support import (
    NOW,
    Ids,
    begin,
    call,
    chain,
    document,
    end,
    flow,
    gateway,
    model,
    process,
    script,
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


def _total(definition: Definition, state: InstanceState) -> int:
    return view.total_tasks_on_path(definition, state)


def _choice(condition: str) -> Definition:
    """start → A → exclusive (condition → B → C, default → D) → end."""
    return model(
        start(),
        script("A", "y = 1;"),
        gateway("exclusive", "gw", default="toD"),
        script("B"),
        script("C"),
        script("D"),
        end(),
        chain("start", "A", "gw"),
        flow("toB", "gw", "B", condition),
        flow("toD", "gw", "D"),
        chain("B", "C", "end", prefix="b"),
        chain("D", "end", prefix="d"),
    )


def test_a_sequence_counts_every_task_and_keeps_its_total_while_stepping() -> None:
    definition = model(start(), script("A"), script("B"), script("C"), end(), chain("start", "A", "B", "C", "end"))
    state = _start(definition)
    totals, positions = [], []
    while state.status is InstanceStatus.WAITING:
        totals.append(_total(definition, state))
        positions.append(view.position(state))
        state = _forward(definition, state)
    assert totals == [3, 3, 3] and positions == [1, 2, 3]
    assert _total(definition, state) == 3  # completed: the steps taken


def test_an_exclusive_gateway_counts_the_branch_the_current_variables_choose() -> None:
    definition = _choice("${x > 5}")
    assert _total(definition, _start(definition, {"x": 10})) == 3  # A, B, C
    assert _total(definition, _start(definition, {"x": 1})) == 2  # A, D


def test_an_exclusive_gateway_that_cannot_be_decided_yet_counts_its_longest_branch() -> None:
    definition = _choice("${y == 2}")  # A writes y: before it runs the condition cannot be evaluated
    state = _start(definition)
    assert _total(definition, state) == 3  # A + the longer branch (B, C)
    state = _forward(definition, state)
    assert token_at(state, "D").blocked_on is not None  # y == 1: the default branch was taken
    assert _total(definition, state) == 2 and view.position(state) == 2


def test_parallel_branches_meet_at_the_join_and_its_tail_counts_once() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        script("A"),
        script("B"),
        gateway("parallel", "join"),
        script("C"),
        end(),
        chain("start", "fork"),
        chain("fork", "A", "join", prefix="p"),
        chain("fork", "B", "join", prefix="q"),
        chain("join", "C", "end", prefix="r"),
    )
    state = _start(definition)
    assert _total(definition, state) == 3
    state = _forward(definition, state)  # A waits at the join now
    assert _total(definition, state) == 3 and view.position(state) == 2
    state = _forward(definition, state)
    assert token_at(state, "C").blocked_on is not None
    assert _total(definition, state) == 3 and view.position(state) == 3


def test_an_inclusive_split_counts_every_flow_that_holds() -> None:
    definition = model(
        start(),
        gateway("inclusive", "split", default="toA"),
        script("A"),
        script("B"),
        script("C"),
        gateway("inclusive", "merge"),
        end(),
        chain("start", "split"),
        flow("toA", "split", "A"),
        flow("toB", "split", "B", "${wantB}"),
        flow("toC", "split", "C", "${wantC}"),
        chain("A", "merge", prefix="a"),
        chain("B", "merge", prefix="b"),
        chain("C", "merge", prefix="c"),
        chain("merge", "end", prefix="m"),
    )
    assert _total(definition, _start(definition, {"wantB": True, "wantC": True})) == 2
    assert _total(definition, _start(definition, {"wantB": False, "wantC": True})) == 1
    assert _total(definition, _start(definition, {"wantB": False, "wantC": False})) == 1  # default


def test_a_loop_back_counts_its_tasks_once_and_the_walk_ends() -> None:
    definition = model(
        start(),
        script("A", "n = (context.n || 0) + 1;"),
        gateway("exclusive", "again", default="out"),
        end(),
        chain("start", "A", "again"),
        flow("back", "again", "A", "${n < 3}"),
        flow("out", "again", "end"),
    )
    state = _start(definition)
    assert _total(definition, state) == 1
    state = _forward(definition, state)
    assert token_at(state, "A").blocked_on is not None
    assert view.position(state) == 2 and _total(definition, state) == 2  # one step done, A once more ahead


def test_subprocess_and_call_activity_bodies_count() -> None:
    definition = document(
        process(
            start(),
            subprocess("sub", start("s0"), script("inner1"), script("inner2"), end("s1"),
                       chain("s0", "inner1", "inner2", "s1", prefix="i")),
            call("callIt", "Callee"),
            script("after"),
            end(),
            chain("start", "sub", "callIt", "after", "end"),
        ),
        process(start("c0"), script("called"), end("c1"), chain("c0", "called", "c1", prefix="c"),
                ident="Callee", name="Callee"),
    )
    state = _start(definition)
    # a call activity is a step of its own, and so is every task of the process it calls
    assert _total(definition, state) == 5  # inner1, inner2, callIt, called, after
    state = _forward(definition, _forward(definition, state))
    assert token_at(state, "callIt").blocked_on is not None
    assert view.position(state) == 3 and _total(definition, state) == 5
    state = _forward(definition, state)
    assert token_at(state, "called").blocked_on is not None
    assert view.position(state) == 4 and _total(definition, state) == 5


def test_a_task_whose_step_is_under_way_is_not_counted_twice() -> None:
    definition = model(start(), user("U"), script("S"), end(), chain("start", "U", "S", "end"))
    state = _forward(definition, _start(definition))
    token = token_at(state, "U")
    assert token.blocked_on is not None and token.blocked_on.kind == "userTask"
    assert view.position(state, token.id) == 1 and view.position(state) == 2
    assert _total(definition, state) == 2
    state = engine.complete_task(definition, state, now=NOW, ids=Ids()).state
    assert view.position(state, token_at(state, "S").id) == 2 and _total(definition, state) == 2


def test_a_failed_step_keeps_its_position_and_offers_step_back() -> None:
    definition = model(start(), script("A"), script("B", "throw new Error('no');"), end(),
                       chain("start", "A", "B", "end"))
    state = _forward(definition, _forward(definition, _start(definition)))
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert view.position(state, state.error.token_id) == 2 and _total(definition, state) == 2
    assert [a["action"] for a in view.next_actions(definition, state)] == ["retry", "skip", "stepBackward", "cancel"]
    back = engine.step_backward(definition, state, now=NOW, ids=Ids()).state
    assert back.status is InstanceStatus.WAITING and back.error is None
    assert "_lastError" not in back.variables
