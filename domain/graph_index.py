"""Lookups the run loop needs over and over, computed once per process graph.

`ProcessGraph` is immutable, so whatever is derived from it can be cached for as long as the
graph lives. The cache is keyed by object identity (graphs hold mappings and are not hashable)
and bounded, so graphs of retired definitions drop out.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

from domain.model import EventKind, Flow, Node, NodeKind, ProcessGraph

_CACHE_SIZE = 256


class GraphIndex:
    """Per-graph tables: outgoing flows, scope entry nodes, reachability, parsed JSON properties."""

    __slots__ = (
        "_json", "_reach", "called_elements", "entries", "gated", "graph", "incoming_count", "outgoing",
        "plain_starts", "straight", "tasks", "unrun",
    )

    def __init__(self, graph: ProcessGraph) -> None:
        self.graph = graph
        flows = graph.flows
        self.outgoing: dict[str, tuple[Flow, ...]] = {
            node.id: tuple(flows[f] for f in node.outgoing if f in flows) for node in graph.nodes.values()
        }
        self.incoming_count: dict[str, int] = {node.id: len(node.incoming) for node in graph.nodes.values()}
        self.entries: dict[str, tuple[str, ...]] = _scope_entries(graph)
        # where an instance starts when the command names no start node: the process's none
        # start events, else all of its start events (one of them is the answer, else none is)
        starts = [graph.nodes[n] for n in graph.start_nodes if n in graph.nodes]
        plain = [n for n in starts if n.event is None or n.event.kind is EventKind.NONE]
        self.plain_starts: tuple[Node, ...] = tuple(plain or starts)
        # what a state view and a start ask of every graph on every request
        self.tasks: frozenset[str] = frozenset(node.id for node in graph.nodes.values() if node.is_task)
        self.called_elements: frozenset[str] = frozenset(
            node.called_element
            for node in graph.nodes.values()
            if node.kind is NodeKind.CALL_ACTIVITY and node.called_element
        )
        self._reach: dict[str, frozenset[str]] = {}
        self._json: dict[tuple[str, str], Any] = {}
        self.unrun: dict[str, str] = _unrun_attachments(graph)
        # nodes whose arrival needs more than "go on": the rest skip the gate checks
        self.gated: frozenset[str] = frozenset(
            node.id for node in graph.nodes.values() if node.id in self.unrun or _has_gate(node)
        )
        # nodes left by exactly one flow without a condition: no routing rule can pick another
        self.straight: dict[str, Flow] = {
            node_id: flows[0]
            for node_id, flows in self.outgoing.items()
            if len(flows) == 1 and flows[0].condition is None and _routes_plainly(graph.nodes[node_id])
        }

    def can_reach(self, target: str) -> frozenset[str]:
        """Ids of the nodes from which a token can travel to `target` (boundary events included)."""
        found = self._reach.get(target)
        if found is None:
            found = _predecessors(self.graph, target)
            self._reach[target] = found
        return found

    def json_prop(self, node: Node, name: str) -> Any:
        """A JSON-valued extension property, parsed once; None when absent.

        Raises ValueError when the text is not JSON.
        """
        key = (node.id, name)
        if key in self._json:
            return self._json[key]
        raw = node.prop(name)
        value = None if raw is None or not raw.strip() else json.loads(raw)
        self._json[key] = value
        return value


def _has_gate(node: Node) -> bool:
    """Whether arriving at `node` may wait (a join, startQuantity > 1) or fail (loop, bad quantities)."""
    kind = node.kind
    if kind in (NodeKind.PARALLEL_GATEWAY, NodeKind.INCLUSIVE_GATEWAY):
        return len(node.incoming) > 1
    if node.is_task or kind is NodeKind.SUB_PROCESS:
        return node.loop is not None or node.start_quantity != 1 or node.completion_quantity < 1
    return False


def _routes_plainly(node: Node) -> bool:
    # an activity with completionQuantity > 1 sends several tokens down its one flow
    return node.kind in _GATEWAYS_ROUTED or node.completion_quantity == 1


_GATEWAYS_ROUTED = frozenset({NodeKind.EXCLUSIVE_GATEWAY, NodeKind.INCLUSIVE_GATEWAY, NodeKind.PARALLEL_GATEWAY})


def _scope_entries(graph: ProcessGraph) -> dict[str, tuple[str, ...]]:
    """Where a scope starts: its none start events, else its single start event, else every
    node without incoming flow (BPMN allows a subprocess without a start event)."""
    entries: dict[str, tuple[str, ...]] = {}
    scopes = {node.scope or "" for node in graph.nodes.values()} | set(graph.scope_starts)
    for scope in scopes:
        starts = [graph.nodes[s] for s in graph.scope_starts.get(scope, ()) if s in graph.nodes]
        plain = [s.id for s in starts if s.event is None or s.event.kind is EventKind.NONE]
        if plain:
            entries[scope] = (plain[0],)
        elif len(starts) == 1:
            entries[scope] = (starts[0].id,)
        elif not starts:
            entries[scope] = tuple(
                n.id
                for n in graph.nodes.values()
                if (n.scope or "") == scope
                and not n.incoming
                and n.kind is not NodeKind.BOUNDARY_EVENT
                and not n.triggered_by_event
                and not n.is_for_compensation
            )
    return entries


def _predecessors(graph: ProcessGraph, target: str) -> frozenset[str]:
    back: dict[str, list[str]] = {}
    for flow in graph.flows.values():
        back.setdefault(flow.target, []).append(flow.source)
    for host, boundary_ids in graph.boundaries.items():
        for boundary in boundary_ids:
            back.setdefault(boundary, []).append(host)
    seen: set[str] = set()
    todo = [target]
    while todo:
        for source in back.get(todo.pop(), ()):
            if source not in seen:
                seen.add(source)
                todo.append(source)
    return frozenset(seen)


_cache: OrderedDict[int, tuple[ProcessGraph, GraphIndex]] = OrderedDict()


def index_of(graph: ProcessGraph) -> GraphIndex:
    key = id(graph)
    hit = _cache.get(key)
    if hit is not None and hit[0] is graph:
        _cache.move_to_end(key)
        return hit[1]
    index = GraphIndex(graph)
    _cache[key] = (graph, index)
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return index


_global_graphs: OrderedDict[int, tuple[Node, ProcessGraph]] = OrderedDict()


def global_task_graph(task: Node) -> ProcessGraph:
    """A global task (callable by a call activity) as a one-node process the engine can run."""
    key = id(task)
    hit = _global_graphs.get(key)
    if hit is not None and hit[0] is task:
        return hit[1]
    graph = ProcessGraph(
        id=task.id,
        name=task.name,
        is_executable=True,
        nodes=MappingProxyType({task.id: task}),
        flows=MappingProxyType({}),
        scope_starts=MappingProxyType({"": ()}),
        boundaries=MappingProxyType({}),
    )
    _global_graphs[key] = (task, graph)
    if len(_global_graphs) > _CACHE_SIZE:
        _global_graphs.popitem(last=False)
    return graph


# Boundary events the engine can honour; the others would silently never fire.
_RUN_BOUNDARY_KINDS = frozenset({EventKind.ERROR})


def _unrun_attachments(graph: ProcessGraph) -> dict[str, str]:
    """Node id (an activity, or a scope's start event) -> why the model cannot run as drawn there:
    a boundary event or an event subprocess of a kind flowcore does not trigger yet."""
    found: dict[str, str] = {}
    for node in graph.nodes.values():
        if node.kind is NodeKind.BOUNDARY_EVENT and node.attached_to:
            kinds = [e.kind for e in node.events] or [EventKind.NONE]
            if any(k not in _RUN_BOUNDARY_KINDS for k in kinds):
                names = ", ".join(k.value for k in kinds)
                found.setdefault(node.attached_to, f"its {names} boundary event '{node.id}' is not supported yet")
        elif node.kind is NodeKind.SUB_PROCESS and node.triggered_by_event:
            for start_id in graph.scope_starts.get(node.scope or "", ()):
                found.setdefault(start_id, f"event subprocess '{node.id}' in its scope is not supported yet")
    return found
