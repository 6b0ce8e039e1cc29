"""Hypothesis: random well-formed models, random forward/backward steps in supervised mode.

  * stepping back to step k gives exactly the variables (byte for byte) and the token places the
    instance had when it stood at step k, and stepping forward again with the default token
    gives exactly the variables it had at step k + 1 the first time;
  * stepping back is only ever refused at the first step, after a join merged the stepped token
    or after it left a subprocess (the driver answers every user task within its step, so no
    other branch moves outside stepping);
  * position and totalTasks stay consistent (1 <= position <= totalTasks while paused);
  * stepping forward to the end gives the same final variables as an unsupervised run.
The models are the nested blocks of test_properties (sequences, parallel / exclusive /
inclusive blocks, subprocesses, script and user tasks).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import engine, view
from domain.errors import InvalidStateForCommand
from domain.model import Definition
from domain.state import ExecutionMode, InstanceState, InstanceStatus, TokenState
from domain.tokens import is_alive, kind_of
from tests.domain.engine_support import NOW, Ids
from tests.domain.test_properties import blocks, build, drive

ALLOWED_REFUSALS = ("Cannot step back across the join", "Cannot step back out of the subprocess")
FIRST = "The instance is at its first task; there is no step to go back to."

# an operation: None = step back; an int = step forward with that pick (-1: the default token).
# Runs of forward steps followed by a few steps back, so backs mostly have something to undo.
_forward = st.integers(min_value=-1, max_value=3)
_round = st.tuples(st.lists(_forward, min_size=1, max_size=3), st.integers(min_value=0, max_value=3))
operations = st.lists(_round, max_size=10).map(
    lambda rounds: [op for forwards, backs in rounds for op in [*forwards, *[None] * backs]]
)


def _vars(state: InstanceState) -> bytes:
    return msgspec.json.encode(state.variables)


def _places(state: InstanceState) -> Counter[tuple[str, str, str | None]]:
    return Counter((t.current_node_id, t.state.value, kind_of(t)) for t in state.tokens if is_alive(t))


def _paused(state: InstanceState) -> list[int]:
    return [t.id for t in state.tokens if t.state is TokenState.ACTIVE and kind_of(t) == "supervisedPause"]


class Driver:
    def __init__(self, definition: Definition, pick: int) -> None:
        self.definition = definition
        self.ids = Ids()
        self.state = engine.start(definition, instance_guid="p", variables={"pick": pick}, now=NOW, ids=self.ids,
                                  execution_mode=ExecutionMode.SUPERVISED).state
        # what the instance looked like at each step of the current lineage: depth k -> (variables, places)
        self.at_depth: list[tuple[bytes, Counter[tuple[str, str, str | None]]]] = [self._seen()]
        self.by_default: list[bool] = []  # per step of the lineage: taken with the default token?
        self.undone: bytes | None = None  # variables after the step just undone, if it took the default token

    def _seen(self) -> tuple[bytes, Counter[tuple[str, str, str | None]]]:
        return _vars(self.state), _places(self.state)

    def _answer_user_tasks(self) -> None:
        """The stepped user task is answered within its step (so nothing moves outside stepping)."""
        for _ in range(50):
            waiting = [w for w in view.waiting_tasks(self.definition, self.state) if w.kind == "userTask"]
            if not waiting:
                return
            self.state = engine.complete_task(self.definition, self.state, now=NOW, ids=self.ids,
                                               token_id=waiting[0].token_id, result={"by": waiting[0].task_id}).state

    def check_counts(self) -> None:
        if self.state.status is InstanceStatus.WAITING and _paused(self.state):
            position = view.position(self.state)
            assert position == len(self.state.snapshots) + 1
            assert 1 <= position <= view.total_tasks_on_path(self.definition, self.state)

    def forward(self, pick: int) -> bool:
        paused = _paused(self.state)
        if not paused or self.state.status is not InstanceStatus.WAITING:
            return False
        token_id = None if pick < 0 else paused[pick % len(paused)]
        self.state = engine.step_forward(self.definition, self.state, now=NOW, ids=self.ids, token_id=token_id).state
        self._answer_user_tasks()
        if token_id is None and self.undone is not None:
            assert _vars(self.state) == self.undone  # the same lineage, the same task, the same result
        self.undone = None
        self.at_depth.append(self._seen())
        self.by_default.append(token_id is None)
        assert len(self.state.snapshots) == len(self.at_depth) - 1
        return True

    def back(self) -> None:
        if self.state.status is not InstanceStatus.WAITING and self.state.status is not InstanceStatus.ERROR:
            return
        try:
            self.state = engine.step_backward(self.definition, self.state, now=NOW, ids=self.ids).state
        except InvalidStateForCommand as refusal:
            if len(self.at_depth) == 1:
                assert refusal.message == FIRST
            else:
                assert refusal.message.startswith(ALLOWED_REFUSALS), refusal.message
            return
        undone_vars, _ = self.at_depth.pop()
        variables, places = self.at_depth[-1]
        assert _vars(self.state) == variables
        assert _places(self.state) == places
        self.undone = undone_vars if self.by_default.pop() else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=blocks, pick=st.integers(min_value=0, max_value=15), ops=operations)
def test_random_steps_back_restore_exactly_and_the_end_matches_an_unsupervised_run(
    block: Any, pick: int, ops: list[int | None]
) -> None:
    definition = build(block)
    driver = Driver(definition, pick)
    for op in ops:
        driver.check_counts()
        if op is None:
            driver.back()
        else:
            driver.forward(op)
    for _ in range(200):
        driver.check_counts()
        if not driver.forward(-1):
            break
    final = driver.state
    assert final.status is InstanceStatus.COMPLETED, (final.status, final.error)
    assert not [t for t in final.tokens if is_alive(t)]
    direct, _ = drive(definition, pick, restore=False)

    def without_last_answer(variables: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in variables.items() if k != "lastUserTaskResult"}

    assert without_last_answer(final.variables) == without_last_answer(direct.variables)
    assert sorted(final.completed_tasks) == sorted(direct.completed_tasks)
