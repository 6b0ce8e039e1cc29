"""Random well-formed process graphs, as BPMN text through the real parser and sandbox.

Graphs are built from nested blocks: sequences, parallel / exclusive / inclusive blocks (every
choice has a default flow), embedded subprocesses, script tasks that write variables and user
tasks the test driver completes. Properties:
  * every run ends completed, with no live token and every task run as often as routed;
  * saving and restoring the state (encode/decode) between commands changes nothing;
  * history sequence numbers are contiguous and token versions never go down;
  * stepping through in supervised mode, with step backs in between, ends like an unsupervised run.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import engine
from domain.errors import InvalidStateForCommand
from domain.model import Definition
from domain.parser import parse_definition
from domain.state import ExecutionMode, InstanceState, InstanceStatus, decode_state, encode_state
from domain.tokens import is_alive
from domain.view import waiting_tasks
from tests.domain.engine_support import NOW, Ids


@dataclass(frozen=True)
class Script:
    pass


@dataclass(frozen=True)
class User:
    pass


@dataclass(frozen=True)
class Seq:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Choice:
    kind: str  # "parallel" | "exclusive" | "inclusive"
    branches: tuple[Any, ...]


@dataclass(frozen=True)
class Sub:
    body: Any


leaves = st.one_of(st.just(Script()), st.just(Script()), st.just(User()))


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Seq(tuple(xs))),
        st.builds(
            Choice,
            st.sampled_from(["parallel", "exclusive", "inclusive"]),
            st.lists(children, min_size=2, max_size=3).map(tuple),
        ),
        children.map(Sub),
    )


blocks = st.recursive(leaves, _extend, max_leaves=10)


class _Compiler:
    """Blocks -> BPMN elements; every node and flow gets a fresh id."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.scripts: list[str] = []

    def _new(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def flow(self, source: str, target: str, condition: str | None = None) -> tuple[str, str]:
        ident = self._new("f")
        if condition is None:
            return ident, f'<sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}"/>'
        return ident, (
            f'<sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}">'
            f"<conditionExpression>{condition}</conditionExpression></sequenceFlow>"
        )

    def block(self, block: Any) -> tuple[str, str, list[str]]:
        """(entry node id, exit node id, elements)."""
        if isinstance(block, Script):
            ident = self._new("s")
            self.scripts.append(ident)
            code = f"runs = (context.runs || 0) + 1; seen_{ident} = (context.seen_{ident} || 0) + 1;"
            return ident, ident, [f'<scriptTask id="{ident}"><script>{code}</script></scriptTask>']
        if isinstance(block, User):
            ident = self._new("u")
            return ident, ident, [f'<userTask id="{ident}"/>']
        if isinstance(block, Seq):
            parts = [self.block(item) for item in block.items]
            elements = [e for _, _, els in parts for e in els]
            for (_, exit_id, _), (entry_id, _, _) in itertools.pairwise(parts):
                elements.append(self.flow(exit_id, entry_id)[1])
            return parts[0][0], parts[-1][1], elements
        if isinstance(block, Sub):
            ident = self._new("sub")
            start, end = self._new("ss"), self._new("se")
            entry, exit_id, inner = self.block(block.body)
            body = [
                f'<startEvent id="{start}"/>',
                f'<endEvent id="{end}"/>',
                *inner,
                self.flow(start, entry)[1],
                self.flow(exit_id, end)[1],
            ]
            return ident, ident, [f'<subProcess id="{ident}">{"".join(body)}</subProcess>']
        assert isinstance(block, Choice)
        split, merge = self._new("g"), self._new("g")
        elements: list[str] = []
        default = None
        for n, branch in enumerate(block.branches):
            entry, exit_id, inner = self.block(branch)
            elements += inner
            condition = None
            if block.kind == "exclusive" and n > 0:
                condition = f"pick % {len(block.branches)} == {n}"
            elif block.kind == "inclusive" and n > 0:
                condition = f"(pick &gt;&gt; {n}) % 2 == 1"
            flow_id, xml = self.flow(split, entry, condition)
            if block.kind != "parallel" and n == 0:
                default = flow_id
            elements.append(xml)
            elements.append(self.flow(exit_id, merge)[1])
        default_attr = f' default="{default}"' if default else ""
        elements.append(f'<{block.kind}Gateway id="{split}"{default_attr}/>')
        elements.append(f'<{block.kind}Gateway id="{merge}"/>')
        return split, merge, elements


def expected_runs(block: Any, pick: int) -> tuple[int, int]:
    """(script runs, user tasks) the routing rules imply for `pick`."""
    if isinstance(block, Script):
        return 1, 0
    if isinstance(block, User):
        return 0, 1
    if isinstance(block, Sub):
        return expected_runs(block.body, pick)
    if isinstance(block, Seq):
        chosen = list(block.items)
    elif block.kind == "parallel":
        chosen = list(block.branches)
    elif block.kind == "exclusive":
        width = len(block.branches)
        hit = [b for n, b in enumerate(block.branches) if n > 0 and pick % width == n]
        chosen = hit[:1] or [block.branches[0]]
    else:
        hit = [b for n, b in enumerate(block.branches) if n > 0 and (pick >> n) % 2 == 1]
        chosen = hit or [block.branches[0]]
    counts = [expected_runs(b, pick) for b in chosen]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def build(block: Any) -> Definition:
    compiler = _Compiler()
    entry, exit_id, elements = compiler.block(block)
    body = [
        '<startEvent id="start"/>',
        '<endEvent id="end"/>',
        *elements,
        compiler.flow("start", entry)[1],
        compiler.flow(exit_id, "end")[1],
    ]
    xml = (
        '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">'
        f'<process id="Random" isExecutable="true">{"".join(body)}</process></definitions>'
    )
    return parse_definition(xml)


def drive(definition: Definition, pick: int, *, restore: bool) -> tuple[InstanceState, list[int]]:
    """Start and complete user tasks until the instance stops waiting; optionally save/restore each time."""
    ids = Ids()
    transition = engine.start(definition, instance_guid="p", variables={"pick": pick}, now=NOW, ids=ids)
    seqs = [e.seq for e in transition.events]
    state = transition.state
    for _ in range(200):
        if restore:
            state = decode_state(encode_state(state))
        if state.status is not InstanceStatus.WAITING:
            break
        versions = {t.id: t.version for t in state.tokens}
        first = waiting_tasks(definition, state)[0]
        transition = engine.complete_task(
            definition, state, now=NOW, ids=ids, token_id=first.token_id, result={"by": first.task_id}
        )
        state = transition.state
        seqs += [e.seq for e in transition.events]
        assert all(t.version >= versions.get(t.id, 0) for t in state.tokens)
    return state, seqs


def completed_user_tasks(state: InstanceState) -> list[str]:
    return [task for task in state.completed_tasks if task.startswith("u")]


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(block=blocks, pick=st.integers(min_value=0, max_value=15))
def test_random_graphs_complete_with_no_live_tokens(block: Any, pick: int) -> None:
    definition = build(block)
    state, seqs = drive(definition, pick, restore=False)
    assert state.status is InstanceStatus.COMPLETED, (state.status, state.error)
    assert state.outcome == "success"
    assert not [t for t in state.tokens if is_alive(t)]
    assert seqs == list(range(1, len(seqs) + 1))
    scripts, users = expected_runs(block, pick)
    assert state.variables.get("runs", 0) == scripts
    assert sum(v for k, v in state.variables.items() if k.startswith("seen_")) == scripts
    assert sum(1 for e in completed_user_tasks(state)) == users
    assert state.completed_tasks[0] == "start"


@FAST
@given(block=blocks, pick=st.integers(min_value=0, max_value=15))
def test_saving_and_restoring_between_commands_changes_nothing(block: Any, pick: int) -> None:
    definition = build(block)
    direct, direct_seqs = drive(definition, pick, restore=False)
    restored, restored_seqs = drive(definition, pick, restore=True)
    assert encode_state(direct) == encode_state(restored)
    assert direct_seqs == restored_seqs


def _without_last_answer(variables: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if k != "lastUserTaskResult"}


def drive_supervised(definition: Definition, pick: int, backs: list[bool]) -> InstanceState:
    """Step through every task; after some steps try a step back (refusals are part of the rules)."""
    ids = Ids()
    state = engine.start(
        definition,
        instance_guid="p",
        variables={"pick": pick},
        now=NOW,
        ids=ids,
        execution_mode=ExecutionMode.SUPERVISED,
    ).state
    wants_back = iter(backs)
    for _ in range(400):
        if state.status is not InstanceStatus.WAITING:
            break
        waits = waiting_tasks(definition, state)
        paused = [w for w in waits if w.kind == "supervisedPause"]
        if paused:
            state = engine.step_forward(definition, state, now=NOW, ids=ids).state
            if next(wants_back, False):
                with contextlib.suppress(InvalidStateForCommand):
                    state = engine.step_backward(definition, state, now=NOW, ids=ids).state
            continue
        done = engine.complete_task(
            definition, state, now=NOW, ids=ids, token_id=waits[0].token_id, result={"by": waits[0].task_id}
        )
        state = done.state
    return state


@FAST
@given(block=blocks, pick=st.integers(min_value=0, max_value=15), backs=st.lists(st.booleans(), max_size=12))
def test_supervised_stepping_with_step_backs_ends_like_an_unsupervised_run(
    block: Any, pick: int, backs: list[bool]
) -> None:
    definition = build(block)
    direct, _ = drive(definition, pick, restore=False)
    stepped = drive_supervised(definition, pick, backs)
    assert stepped.status is InstanceStatus.COMPLETED, (stepped.status, stepped.error)
    # which user task was answered last depends on the order the tasks were reached
    assert _without_last_answer(stepped.variables) == _without_last_answer(direct.variables)
    assert sorted(stepped.completed_tasks) == sorted(direct.completed_tasks)
    assert not [t for t in stepped.tokens if is_alive(t)]
