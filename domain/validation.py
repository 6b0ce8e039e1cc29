"""Deploy-time checks: can flowcore run this document, and is it well-formed BPMN?

`validate` runs every check over a parsed document and returns all problems found, each
located by element id, tag and line, worded for the person who drew the model. The checks
here are the ones the engine relies on; BPMN's own static rules live in `spec_constraints`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from domain.document_index import DocIndex, Info, build_index
from domain.errors import ValidationProblem
from domain.model import Definition, EventKind, NodeKind, ProcessGraph
from domain.parser import ParsedDocument
from domain.timer_syntax import timer_problem

CompileCheck = Callable[[str, str], "str | None"]

FLOW_NODE_TAGS = frozenset(kind.value for kind in NodeKind)
EVENT_TAGS = frozenset(
    {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
)
GATEWAY_TAGS = frozenset(
    {"exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway"}
)
ACTIVITY_TAGS = FLOW_NODE_TAGS - EVENT_TAGS - GATEWAY_TAGS
CONTAINER_TAGS = frozenset({"process", "subProcess", "transaction", "adHocSubProcess"})

# Children of a process or subprocess that the engine does not execute but that are legal.
_PASSIVE_CHILDREN = frozenset(
    {
        "documentation",
        "extensionElements",
        "auditing",
        "monitoring",
        "categoryValueRef",
        "property",
        "laneSet",
        "ioSpecification",
        "ioBinding",
        "dataObject",
        "dataObjectReference",
        "dataStoreReference",
        "textAnnotation",
        "association",
        "group",
        "resourceRole",
        "performer",
        "humanPerformer",
        "potentialOwner",
        "correlationSubscription",
        "supports",
        "incoming",
        "outgoing",
        "standardLoopCharacteristics",
        "multiInstanceLoopCharacteristics",
        "dataInputAssociation",
        "dataOutputAssociation",
        "completionCondition",
        "sequenceFlow",
        "lane",
        "supportedInterfaceRef",
        "renderings",
        "rendering",
    }
)

_JS_FORMATS = frozenset(
    {
        "javascript",
        "js",
        "ecmascript",
        "text/javascript",
        "application/javascript",
        "text/ecmascript",
        "application/ecmascript",
        "application/x-javascript",
    }
)

_WORDS = re.compile(r"(?<!^)(?=[A-Z])")


def label(info: Info, *, capital: bool = True) -> str:
    """`sequenceFlow` 'Flow_3' -> "Sequence flow 'Flow_3'" (or "sequence flow 'Flow_3'")."""
    words = _WORDS.sub(" ", info.tag).lower()
    name = f" '{info.ident}'" if info.ident else ""
    first = words[:1].upper() if capital else words[:1]
    return f"{first}{words[1:]}{name}"


@dataclass(frozen=True, slots=True)
class Context:
    index: DocIndex
    definition: Definition
    compile_check: CompileCheck | None

    def executable(self, info: Info) -> bool:
        graph = self.definition.processes.get(info.process or "")
        return graph is not None and graph.is_executable


Check = Callable[[Context], Iterator[ValidationProblem]]


def validate(
    document: ParsedDocument, *, compile_check: CompileCheck | None = None
) -> list[ValidationProblem]:
    """Every problem in the document, in check order; empty when it can be deployed."""
    # the spec rules build on this module's helpers, so they are imported when first needed
    from domain.data_rules import DATA_CHECKS
    from domain.reference_rules import check_references
    from domain.spec_constraints import SPEC_CHECKS

    ctx = Context(build_index(document.root), document.definition, compile_check)
    problems: list[ValidationProblem] = []
    seen: set[tuple[str | None, str]] = set()
    for check in (*ENGINE_CHECKS, *SPEC_CHECKS, *DATA_CHECKS, check_references):
        for problem in check(ctx):
            key = (problem.element_id, problem.message)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return problems


# --- processes and ids ---------------------------------------------------------------------


def check_processes(ctx: Context) -> Iterator[ValidationProblem]:
    root = ctx.index.root
    processes = ctx.index.tagged("process")
    where = ValidationProblem
    if not processes:
        yield where(
            "The document contains no process.",
            element_id=root.get("id"),
            tag="definitions",
            line=root.sourceline if isinstance(root.sourceline, int) else 1,
        )
    elif not ctx.definition.executable_processes:
        first = processes[0]
        yield first.problem(
            f'{label(first)} is marked isExecutable="false" and the document has no executable process; '
            "mark the process to run as executable."
        )


def check_ids(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.duplicates:
        first = ctx.index.by_id[info.ident or ""]
        yield info.problem(
            f"The id '{info.ident}' is used more than once (also by the {first.tag} on line {first.line}); "
            "ids must be unique in a document."
        )
    for tag in (*FLOW_NODE_TAGS, "sequenceFlow", "process", "messageFlow"):
        for info in ctx.index.tagged(tag):
            if not info.ident:
                yield info.problem(f"A {label(info, capital=False)} on line {info.line} has no id.")


# --- sequence flows and node connections ----------------------------------------------------


def check_sequence_flows(ctx: Context) -> Iterator[ValidationProblem]:
    by_id = ctx.index.by_id
    for flow in ctx.index.tagged("sequenceFlow"):
        for attr, role in (("sourceRef", "comes from"), ("targetRef", "points to")):
            ref = flow.get(attr)
            if not ref:
                yield flow.problem(f"{label(flow)} has no {attr}.")
                continue
            node = by_id.get(ref)
            if node is None:
                yield flow.problem(f"{label(flow)} {role} '{ref}', which does not exist.")
            elif node.tag not in FLOW_NODE_TAGS:
                yield flow.problem(
                    f"{label(flow)} {role} {label(node)}; sequence flows connect only activities, events "
                    "and gateways."
                )
            elif node.container != flow.container:
                yield flow.problem(
                    f"{label(flow)} {role} {label(node)} in another process or subprocess level; "
                    "a sequence flow cannot cross a subprocess boundary."
                )


def check_connections(ctx: Context) -> Iterator[ValidationProblem]:
    for graph in ctx.definition.processes.values():
        for node in graph.nodes.values():
            info = ctx.index.by_id.get(node.id)
            if info is None:
                continue
            kind = node.kind
            if kind is NodeKind.START_EVENT and node.incoming:
                yield info.problem(
                    f"{label(info)} has an incoming sequence flow; a start event cannot have one."
                )
            elif kind is NodeKind.END_EVENT and node.outgoing:
                yield info.problem(
                    f"{label(info)} has an outgoing sequence flow; an end event cannot have one."
                )
            elif kind is NodeKind.BOUNDARY_EVENT:
                yield from _boundary(
                    ctx,
                    info,
                    node.attached_to,
                    bool(node.incoming),
                    bool(node.outgoing),
                    any(e.kind is EventKind.COMPENSATE for e in node.events),
                )
            elif info.tag in GATEWAY_TAGS and not node.outgoing:
                yield info.problem(f"{label(info)} has no outgoing sequence flow.")
            if node.default_flow is not None:
                flow = graph.flows.get(node.default_flow)
                if flow is None or flow.source != node.id:
                    yield info.problem(
                        f"{label(info)} names '{node.default_flow}' as its default flow, which is not one of "
                        "its outgoing sequence flows."
                    )
                elif flow.condition is not None and info.tag in GATEWAY_TAGS:
                    yield info.problem(
                        f"{label(info)} has default flow '{flow.id}' with a condition; a default flow "
                        "must not have one."
                    )


def _boundary(
    ctx: Context, info: Info, host: str | None, has_in: bool, has_out: bool, compensation: bool
) -> Iterator[ValidationProblem]:
    host_info = ctx.index.by_id.get(host) if host else None
    if host is None:
        yield info.problem(f"{label(info)} is not attached to any activity (attachedToRef is missing).")
    elif host_info is None:
        yield info.problem(f"{label(info)} is attached to '{host}', which does not exist.")
    elif host_info.tag not in ACTIVITY_TAGS:
        yield info.problem(
            f"{label(info)} is attached to {label(host_info, capital=False)}, which is not an activity."
        )
    elif host_info.container != info.container:
        yield info.problem(
            f"{label(info)} is attached to {label(host_info, capital=False)} on another process level."
        )
    if has_in:
        yield info.problem(f"{label(info)} has an incoming sequence flow; a boundary event cannot have one.")
    if compensation and has_out:
        yield info.problem(
            f"{label(info)} is a compensation boundary event and must not have outgoing "
            "sequence flows; connect its handler with an association."
        )
    if not compensation and not has_out:
        yield info.problem(f"{label(info)} has no outgoing sequence flow.")


# --- reachability ---------------------------------------------------------------------------


def _instantiating(ctx: Context, node_id: str) -> bool:
    info = ctx.index.by_id.get(node_id)
    return info is not None and (info.get("instantiate") or "").strip() == "true"


def check_reachability(ctx: Context) -> Iterator[ValidationProblem]:
    for graph in ctx.definition.processes.values():
        if graph.is_executable:
            yield from _reachability(ctx, graph)


def _reachability(ctx: Context, graph: ProcessGraph) -> Iterator[ValidationProblem]:
    scopes: dict[str, list[str]] = {}
    for node in graph.nodes.values():
        scopes.setdefault(node.scope or "", []).append(node.id)
    if (
        not graph.scope_starts.get("")
        and not any(_instantiating(ctx, n) for n in scopes.get("", []))
        and scopes.get("")
    ):
        info = ctx.index.by_id.get(graph.id)
        if info is not None:
            yield info.problem(f"{label(info)} has no start event, so it can never be started.")
        return
    adhoc = {n.id for n in graph.nodes.values() if n.kind is NodeKind.AD_HOC_SUB_PROCESS}
    reached: set[str] = set()
    pending: list[str] = []
    for scope, members in scopes.items():
        starts = graph.scope_starts.get(scope, ())
        for node_id in members:
            node = graph.nodes[node_id]
            entry = (
                node.kind is NodeKind.START_EVENT
                or node.kind is NodeKind.BOUNDARY_EVENT
                or node.triggered_by_event
                or node.is_for_compensation
                or scope in adhoc
                or (not node.incoming and (not starts or _instantiating(ctx, node_id)))
                or (
                    node.kind is NodeKind.INTERMEDIATE_CATCH_EVENT
                    and any(e.kind is EventKind.LINK for e in node.events)
                )
            )
            if entry:
                pending.append(node_id)
    while pending:
        node_id = pending.pop()
        if node_id in reached:
            continue
        reached.add(node_id)
        for flow_id in graph.nodes[node_id].outgoing:
            flow = graph.flows.get(flow_id)
            if flow is not None and flow.target in graph.nodes and flow.target not in reached:
                pending.append(flow.target)
    for node in graph.nodes.values():
        if node.id not in reached:
            info = ctx.index.by_id.get(node.id)
            if info is not None:
                yield info.problem(f"{label(info)} cannot be reached from any start event.")


# --- element kinds --------------------------------------------------------------------------


def check_element_kinds(ctx: Context) -> Iterator[ValidationProblem]:
    for tag, infos in ctx.index.by_tag.items():
        if tag in FLOW_NODE_TAGS or tag in _PASSIVE_CHILDREN:
            continue
        for info in infos:
            if info.parent_tag in CONTAINER_TAGS and ctx.executable(info):
                yield info.problem(
                    f"{label(info)} is a {info.tag}, which flowcore cannot execute; "
                    "remove it or mark the process as not executable."
                )


# --- events ---------------------------------------------------------------------------------


def check_timers(ctx: Context) -> Iterator[ValidationProblem]:
    for graph in ctx.definition.processes.values():
        for node in graph.nodes.values():
            for event in node.events:
                if event.kind is not EventKind.TIMER:
                    continue
                reason = timer_problem(event.timer_type, event.timer_value)
                info = ctx.index.by_id.get(node.id)
                if reason and info is not None:
                    yield info.problem(f"{label(info)} {reason}")


_EVENT_REFS = (
    ("errorEventDefinition", "errorRef", "error"),
    ("escalationEventDefinition", "escalationRef", "escalation"),
    ("messageEventDefinition", "messageRef", "message"),
    ("signalEventDefinition", "signalRef", "signal"),
)


def _owner(ctx: Context, info: Info) -> Info:
    """The event that holds an event definition (or the definition itself when global)."""
    parent = info.elem.getparent()
    ident = parent.get("id") if parent is not None else None
    owner = ctx.index.by_id.get(ident) if ident else None
    return owner if owner is not None and owner.tag in EVENT_TAGS else info


def check_event_refs(ctx: Context) -> Iterator[ValidationProblem]:
    for tag, attr, wanted in _EVENT_REFS:
        for info in ctx.index.tagged(tag):
            ref = info.get(attr)
            if ref is None:
                continue
            ident = ref.rpartition(":")[2].strip()
            target = ctx.index.by_id.get(ident)
            owner = _owner(ctx, info)
            if target is None:
                yield owner.problem(f"{label(owner)} refers to {wanted} '{ident}', which does not exist.")
            elif target.tag != wanted:
                yield owner.problem(
                    f"{label(owner)} refers to '{ident}' as its {wanted}, but that is "
                    f"{label(target, capital=False)}."
                )
    for info in ctx.index.tagged("eventDefinitionRef"):
        ident = (info.elem.text or "").rpartition(":")[2].strip()
        target = ctx.index.by_id.get(ident)
        parent = info.elem.getparent()
        holder = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        where: Info = holder if holder is not None else info
        if target is None:
            yield where.problem(f"{label(where)} refers to event definition '{ident}', which does not exist.")
        elif not target.tag.endswith("EventDefinition"):
            yield where.problem(
                f"{label(where)} refers to '{ident}' as an event definition, but that is "
                f"{label(target, capital=False)}."
            )


# --- activities -----------------------------------------------------------------------------


def check_activities(ctx: Context) -> Iterator[ValidationProblem]:
    for graph in ctx.definition.processes.values():
        if not graph.is_executable:
            continue
        for node in graph.nodes.values():
            info = ctx.index.by_id.get(node.id)
            if info is None:
                continue
            if node.kind is NodeKind.CALL_ACTIVITY and not node.called_element:
                yield info.problem(
                    f"{label(info)} does not say which process to call (calledElement is empty)."
                )
            if info.tag in ACTIVITY_TAGS:
                yield from _quantities(info)
            if node.loop is not None:
                yield from _loop(info)


def _quantities(info: Info) -> Iterator[ValidationProblem]:
    for attr in ("startQuantity", "completionQuantity"):
        raw = info.get(attr)
        if raw is None:
            continue
        try:
            value = int(raw.strip())
        except ValueError:
            value = 0
        if value < 1:
            yield info.problem(f'{label(info)} has {attr}="{raw}"; it must be a whole number of at least 1.')


def _loop(info: Info) -> Iterator[ValidationProblem]:
    for child in info.elem:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag.endswith("}standardLoopCharacteristics"):
            raw = child.get("loopMaximum")
            if raw is not None and not _non_negative(raw):
                yield info.problem(
                    f'{label(info)} has loopMaximum="{raw}"; it must be a whole number of at least 0.'
                )
        elif tag.endswith("}multiInstanceLoopCharacteristics"):
            for part in child:
                part_tag = part.tag if isinstance(part.tag, str) else ""
                if part_tag.endswith("}loopCardinality"):
                    text = (part.text or "").strip()
                    if text.lstrip("-").isdigit() and not _non_negative(text):
                        yield info.problem(
                            f"{label(info)} has loopCardinality {text}; a multi-instance "
                            "activity cannot run a negative number of times."
                        )


def _non_negative(raw: str) -> bool:
    try:
        return int(raw.strip()) >= 0
    except ValueError:
        return False


# --- expressions and scripts ----------------------------------------------------------------


def check_scripts_and_conditions(ctx: Context) -> Iterator[ValidationProblem]:
    for graph in ctx.definition.processes.values():
        if not graph.is_executable:
            continue
        for node in graph.nodes.values():
            info = ctx.index.by_id.get(node.id)
            if info is None:
                continue
            if node.kind is NodeKind.SCRIPT_TASK:
                fmt = (node.script_format or "javascript").strip().lower()
                if fmt not in _JS_FORMATS:
                    yield info.problem(
                        f"{label(info)} has scriptFormat '{node.script_format}'; flowcore runs "
                        "JavaScript scripts only."
                    )
                elif node.script and ctx.compile_check is not None:
                    error = ctx.compile_check("script", node.script)
                    if error:
                        yield info.problem(f"{label(info)} has a script that does not compile: {error}")
            if ctx.compile_check is not None:
                for event in node.events:
                    if event.kind is EventKind.CONDITIONAL and event.code:
                        error = ctx.compile_check("condition", event.code)
                        if error:
                            yield info.problem(
                                f"{label(info)} has a condition that does not compile: {error}"
                            )
        if ctx.compile_check is None:
            continue
        for flow in graph.flows.values():
            if flow.condition:
                error = ctx.compile_check("condition", flow.condition)
                info = ctx.index.by_id.get(flow.id)
                if error and info is not None:
                    yield info.problem(f"{label(info)} has a condition that does not compile: {error}")


def advisories(document: ParsedDocument) -> list[ValidationProblem]:
    """Things worth telling a modeler that do not block a deploy.

    Conditions on the outgoing flows of a parallel gateway are ignored when the process runs
    (every branch is taken), which is rarely what the modeler meant.
    """
    definition = document.definition
    found: list[ValidationProblem] = []
    for graph in definition.processes.values():
        for node in graph.nodes.values():
            if node.kind is not NodeKind.PARALLEL_GATEWAY:
                continue
            for flow_id in node.outgoing:
                flow = graph.flows.get(flow_id)
                if flow is not None and flow.condition is not None:
                    found.append(
                        ValidationProblem(
                            f"Sequence flow '{flow.id}' leaves parallel gateway '{node.id}' with a "
                            "condition; parallel gateways take every branch, so the condition is ignored.",
                            element_id=flow.id,
                            tag="sequenceFlow",
                            line=flow.line,
                        )
                    )
    return found


ENGINE_CHECKS: tuple[Check, ...] = (
    check_processes,
    check_ids,
    check_sequence_flows,
    check_connections,
    check_reachability,
    check_element_kinds,
    check_timers,
    check_event_refs,
    check_activities,
    check_scripts_and_conditions,
)
