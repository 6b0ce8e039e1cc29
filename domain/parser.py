"""BPMN 2.0 XML -> `Definition`: the one place that reads a document's structure.

The walk visits each process once, top-down, keeping nodes of nested subprocesses in the
process's flat table (with `scope` set). Anything the engine does not execute — diagram
interchange, lanes, collaborations, artifacts, data objects, vendor extensions — is skipped
here; deciding whether a document is acceptable is validation's job, not the parser's.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType

from lxml import etree

from domain.builders import (
    EVENT_DEFINITION_TAGS,
    GLOBAL_TASK_KINDS,
    NODE_BUILDERS,
    RefTables,
    bpmn_local,
    line_of,
    local_ref,
    parse_bool,
    text_of,
)
from domain.model import SUBPROCESS_KINDS, Definition, Flow, Node, NodeKind, ProcessGraph
from domain.xml_loader import check_bpmn_root, load_xml


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The parsed tree (for validation, which needs more than the engine) and its model."""

    root: etree._Element
    definition: Definition


def parse_definition(xml: str | bytes) -> Definition:
    """Parse a BPMN document into the engine's model; raises `InvalidDefinition` if unreadable."""
    return parse_document(xml).definition


def parse_document(xml: str | bytes) -> ParsedDocument:
    root = load_xml(xml)
    check_bpmn_root(root)
    return ParsedDocument(root, build_definition(root))


def _named(elem: etree._Element, attr: str) -> str:
    ident = elem.get("id") or ""
    return elem.get(attr) or elem.get("name") or ident


def _ref_tables(root: etree._Element) -> RefTables:
    errors: dict[str, str] = {}
    messages: dict[str, str] = {}
    signals: dict[str, str] = {}
    escalations: dict[str, str] = {}
    event_definitions: dict[str, etree._Element] = {}
    for child in root:
        local = bpmn_local(child)
        ident = child.get("id")
        if local is None or not ident:
            continue
        if local == "error":
            errors[ident] = _named(child, "errorCode")
        elif local == "message":
            messages[ident] = child.get("name") or ident
        elif local == "signal":
            signals[ident] = child.get("name") or ident
        elif local == "escalation":
            escalations[ident] = _named(child, "escalationCode")
        elif local in EVENT_DEFINITION_TAGS:
            event_definitions[ident] = child
    return RefTables(
        errors=MappingProxyType(errors),
        messages=MappingProxyType(messages),
        signals=MappingProxyType(signals),
        escalations=MappingProxyType(escalations),
        event_definitions=MappingProxyType(event_definitions),
    )


class _ProcessWalk:
    """Collects one process's nodes and flows in document order."""

    __slots__ = ("flows", "nodes", "refs", "subprocesses")

    def __init__(self, refs: RefTables) -> None:
        self.refs = refs
        self.nodes: list[Node] = []
        self.flows: list[Flow] = []
        self.subprocesses: list[str] = []

    def walk(self, container: etree._Element, scope: str | None) -> None:
        for child in container:
            local = bpmn_local(child)
            if local is None:
                continue
            entry = NODE_BUILDERS.get(local)
            if entry is not None:
                kind, builder = entry
                node = builder(child, kind, scope, self.refs)
                self.nodes.append(node)
                if kind in SUBPROCESS_KINDS:
                    self.subprocesses.append(node.id)
                    self.walk(child, node.id)
            elif local == "sequenceFlow":
                self.flows.append(_flow(child))

    def graph(self, process: etree._Element) -> ProcessGraph:
        outgoing: dict[str, list[str]] = {}
        incoming: dict[str, list[str]] = {}
        for flow in self.flows:
            outgoing.setdefault(flow.source, []).append(flow.id)
            incoming.setdefault(flow.target, []).append(flow.id)
        nodes: dict[str, Node] = {}
        starts: dict[str, list[str]] = {"": []}
        for sub in self.subprocesses:
            starts[sub] = []
        boundaries: dict[str, list[str]] = {}
        for node in self.nodes:
            ins, outs = incoming.get(node.id), outgoing.get(node.id)
            if ins or outs:
                node = dataclasses.replace(node, incoming=tuple(ins or ()), outgoing=tuple(outs or ()))
            nodes.setdefault(node.id, node)  # a duplicate id is reported by validation
            if node.kind is NodeKind.START_EVENT:
                starts.setdefault(node.scope or "", []).append(node.id)
            elif node.kind is NodeKind.BOUNDARY_EVENT and node.attached_to:
                boundaries.setdefault(node.attached_to, []).append(node.id)
        flows: dict[str, Flow] = {}
        for flow in self.flows:
            flows.setdefault(flow.id, flow)
        ident = process.get("id") or ""
        return ProcessGraph(
            id=ident,
            name=(process.get("name") or "").strip(),
            is_executable=parse_bool(process.get("isExecutable"), True),
            nodes=MappingProxyType(nodes),
            flows=MappingProxyType(flows),
            scope_starts=MappingProxyType({k: tuple(v) for k, v in starts.items()}),
            boundaries=MappingProxyType({k: tuple(v) for k, v in boundaries.items()}),
            properties=_process_properties(process, self.refs),
        )


def _flow(elem: etree._Element) -> Flow:
    condition = None
    for child in elem:
        if bpmn_local(child) == "conditionExpression":
            condition = text_of(child)
            break
    return Flow(
        id=elem.get("id") or "",
        source=local_ref(elem.get("sourceRef")) or "",
        target=local_ref(elem.get("targetRef")) or "",
        name=(elem.get("name") or "").strip(),
        condition=condition if condition else None,
        line=line_of(elem),
    )


def _process_properties(process: etree._Element, refs: RefTables) -> MappingProxyType[str, str]:
    # Reuse the node builder's extension reading on the process element itself.
    probe = NODE_BUILDERS[NodeKind.TASK.value][1](process, NodeKind.TASK, None, refs)
    return MappingProxyType(dict(probe.properties))


def build_definition(root: etree._Element) -> Definition:
    """Build the model from an already loaded `definitions` element."""
    refs = _ref_tables(root)
    processes: dict[str, ProcessGraph] = {}
    global_tasks: dict[str, Node] = {}
    counts: Counter[str] = Counter()
    for child in root:
        local = bpmn_local(child)
        if local == "process":
            walk = _ProcessWalk(refs)
            walk.walk(child, None)
            graph = walk.graph(child)
            processes.setdefault(graph.id, graph)
            counts.update(node.kind.value for node in walk.nodes)
            counts["sequenceFlow"] += len(walk.flows)
        elif local is not None and local in GLOBAL_TASK_KINDS:
            kind = GLOBAL_TASK_KINDS[local]
            node = NODE_BUILDERS[kind.value][1](child, kind, None, refs)
            global_tasks.setdefault(node.id, node)
    main = next((p.id for p in processes.values() if p.is_executable), None)
    if main is None:
        main = next(iter(processes), "")
    return Definition(
        processes=MappingProxyType(processes),
        main_process=main,
        errors=refs.errors,
        messages=refs.messages,
        signals=refs.signals,
        escalations=refs.escalations,
        global_tasks=MappingProxyType(global_tasks),
        target_namespace=root.get("targetNamespace") or "",
        element_counts=MappingProxyType(dict(counts)),
    )
