"""The tasks still ahead of an instance, along the path it will take as far as it can be known.

Supervised mode reports `totalTasks`: the steps taken so far plus the tasks ahead. Ahead is
walked from every live token over the graph:
  * a token paused before a task, or waiting at a task no step has started, counts that task;
    a task whose step is under way (a user task waiting for its signal, a service call, a failed
    step) is already a step and only what follows it counts;
  * an exclusive gateway takes the flow it would take now, with the current variables; when its
    conditions cannot be evaluated yet (they read variables a task ahead still has to write) or
    none holds, the branch with the most tasks counts, so progress never runs ahead of itself;
  * an inclusive gateway and conditional flows out of an activity take every flow that holds
    now, or every flow when that cannot be told; a parallel split takes every flow; an
    event-based gateway counts its longest branch;
  * a subprocess or call activity counts the tasks on the path through its body, then goes on;
  * each task counts once however many branches reach it (branches meet again at joins), and a
    loop back to a node already on the path stops the walk there.
Boundary events are not followed: they are exceptions to the path, not the path.
"""

from __future__ import annotations

from collections.abc import Callable

from domain import gateways
from domain.graph_index import GraphIndex, global_task_graph, index_of
from domain.model import Definition, Flow, Node, NodeKind, ProcessGraph
from domain.state import InstanceState, Token, TokenState
from domain.tokens import PAUSE, SUBPROCESS, is_pending_join, kind_of

# A task of some process: (process key, None for the instance's own process; node id).
TaskKey = tuple[str | None, str]
Lookup = Callable[[str], ProcessGraph | None]

_NOTHING: frozenset[TaskKey] = frozenset()


class _Walk:
    __slots__ = ("_active", "_definition", "_indexes", "_lookup", "_memo", "_state")

    def __init__(self, definition: Definition, state: InstanceState, lookup: Lookup | None) -> None:
        self._definition = definition
        self._state = state
        self._lookup = lookup
        self._indexes: dict[str | None, GraphIndex | None] = {}
        self._memo: dict[TaskKey, frozenset[TaskKey]] = {}
        self._active: set[TaskKey] = set()

    def index(self, key: str | None) -> GraphIndex | None:
        if key in self._indexes:
            return self._indexes[key]
        name = key or self._state.process_key
        graph = self._definition.processes.get(name)
        if graph is None and name in self._definition.global_tasks:
            graph = global_task_graph(self._definition.global_tasks[name])
        if graph is None and self._lookup is not None:
            graph = self._lookup(name)
        index = index_of(graph) if graph is not None else None
        self._indexes[key] = index
        return index

    def through(self, key: str | None, node_id: str) -> frozenset[TaskKey]:
        """Tasks from `node_id` (itself included) to the end of its scope."""
        here = (key, node_id)
        done = self._memo.get(here)
        if done is not None:
            return done
        if here in self._active:
            return _NOTHING  # a loop back: the tasks on it are already counted
        index = self.index(key)
        node = index.graph.nodes.get(node_id) if index is not None else None
        if index is None or node is None:
            return _NOTHING
        self._active.add(here)
        found: set[TaskKey] = set()
        if node.is_task:
            found.add(here)
        found |= self._body(key, index, node)
        if node.kind is not NodeKind.END_EVENT:
            found |= self.after(key, node)
        self._active.discard(here)
        result = frozenset(found)
        self._memo[here] = result
        return result

    def _body(self, key: str | None, index: GraphIndex, node: Node) -> frozenset[TaskKey]:
        if node.kind is NodeKind.SUB_PROCESS and not node.triggered_by_event:
            return self._union(key, index.entries.get(node.id, ()))
        if node.kind is NodeKind.CALL_ACTIVITY and node.called_element:
            called = self.index(node.called_element)
            if called is not None:
                return self._union(node.called_element, called.entries.get("", ()))
        return _NOTHING

    def _union(self, key: str | None, node_ids: tuple[str, ...] | list[str]) -> frozenset[TaskKey]:
        found: set[TaskKey] = set()
        for node_id in node_ids:
            found |= self.through(key, node_id)
        return frozenset(found)

    def after(self, key: str | None, node: Node) -> frozenset[TaskKey]:
        """Tasks on the path once the token leaves `node`."""
        index = self.index(key)
        if index is None:
            return _NOTHING
        outgoing = index.outgoing.get(node.id, ())
        if not outgoing:
            return _NOTHING
        variables = self._state.variables
        targets = [f.target for f in outgoing]
        try:
            match node.kind:
                case NodeKind.EXCLUSIVE_GATEWAY:
                    return self._union(key, _targets(gateways.exclusive_flows(node, outgoing, variables)))
                case NodeKind.INCLUSIVE_GATEWAY:
                    return self._union(key, _targets(gateways.inclusive_flows(node, outgoing, variables)))
                case NodeKind.PARALLEL_GATEWAY:
                    return self._union(key, targets)
                case NodeKind.EVENT_BASED_GATEWAY:
                    return self._longest(key, targets)
                case _:
                    return self._union(key, _targets(gateways.activity_flows(node, outgoing, variables)))
        except gateways.RoutingError:
            if node.kind is NodeKind.EXCLUSIVE_GATEWAY:
                return self._longest(key, targets)
            return self._union(key, targets)

    def _longest(self, key: str | None, targets: list[str]) -> frozenset[TaskKey]:
        best = _NOTHING
        for target in targets:
            found = self.through(key, target)
            if len(found) > len(best):
                best = found
        return best


def _targets(flows: list[Flow]) -> list[str]:
    return [f.target for f in flows]


def _in_progress(state: InstanceState) -> set[tuple[int, str]]:
    """(token, task) of steps started and not finished: counted as steps already."""
    return {(s.token_id, s.task_id) for s in state.snapshots if s.success is not True}


def tasks_ahead(definition: Definition, state: InstanceState, lookup: Lookup | None = None) -> int:
    """How many tasks the live tokens will still run (see the module notes)."""
    walk = _Walk(definition, state, lookup)
    started = _in_progress(state)
    found: set[TaskKey] = set()
    for token in state.tokens:
        found |= _from_token(walk, token, started)
    return len(found)


def _from_token(walk: _Walk, token: Token, started: set[tuple[int, str]]) -> frozenset[TaskKey]:
    key = token.process_key
    index = walk.index(key)
    node = index.graph.nodes.get(token.current_node_id) if index is not None else None
    if node is None:
        return _NOTHING
    if token.state is TokenState.ON_HOLD:
        # a scope holder goes on after its body (its children walk the body); a split parent's
        # children carry its path
        return walk.after(key, node) if kind_of(token) == SUBPROCESS else _NOTHING
    if token.state is not TokenState.ACTIVE and not is_pending_join(token):
        return _NOTHING
    if node.is_task and kind_of(token) != PAUSE and (token.id, node.id) in started:
        return walk.after(key, node)
    return walk.through(key, node.id)


def total_on_path(definition: Definition, state: InstanceState, lookup: Lookup | None = None) -> int:
    """`totalTasks` in supervised mode: steps taken so far plus the tasks ahead."""
    return len(state.snapshots) + tasks_ahead(definition, state, lookup)
