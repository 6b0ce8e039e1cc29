"""BPMN 2.0's static rules about events, gateways, flows and activities.

These are the spec's own constraints (the rules BPMN checkers number EXT.nnn); most would
also trip the engine later, so refusing them at deploy gives the modeler a located reason.
Rules about data inputs/outputs live in `data_rules`, id references in `reference_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from domain.builders import bpmn_local, text_of
from domain.document_index import Info
from domain.errors import ValidationProblem
from domain.validation import (
    ACTIVITY_TAGS,
    EVENT_TAGS,
    FLOW_NODE_TAGS,
    GATEWAY_TAGS,
    Check,
    Context,
    label,
)

_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _defs(info: Info) -> list[str]:
    """Local tags of an event's event definitions (inline and by eventDefinitionRef)."""
    found: list[str] = []
    for child in info.elem:
        local = bpmn_local(child)
        if local is None:
            continue
        if local.endswith("EventDefinition"):
            found.append(local)
    return found


def _ref_defs(ctx: Context, info: Info) -> list[str]:
    found = _defs(info)
    for child in info.elem:
        if bpmn_local(child) == "eventDefinitionRef":
            target = ctx.index.kind_of((child.text or "").strip().rpartition(":")[2])
            if target and target.endswith("EventDefinition"):
                found.append(target)
    return found


def _flows(ctx: Context) -> tuple[dict[str, list[Info]], dict[str, list[Info]]]:
    incoming: dict[str, list[Info]] = {}
    outgoing: dict[str, list[Info]] = {}
    for flow in ctx.index.tagged("sequenceFlow"):
        source, target = flow.get("sourceRef"), flow.get("targetRef")
        if source:
            outgoing.setdefault(source, []).append(flow)
        if target:
            incoming.setdefault(target, []).append(flow)
    return incoming, outgoing


def _container_tag(ctx: Context, info: Info) -> str | None:
    return ctx.index.kind_of(info.container)


def _is_event_subprocess(info: Info | None) -> bool:
    return info is not None and info.tag == "subProcess" and (info.get("triggeredByEvent") or "") == "true"


# --- events ---------------------------------------------------------------------------------

_TOP_START = frozenset(
    {"messageEventDefinition", "timerEventDefinition", "conditionalEventDefinition", "signalEventDefinition"}
)
_EVENT_SUB_START = frozenset(
    {
        "messageEventDefinition",
        "errorEventDefinition",
        "escalationEventDefinition",
        "compensateEventDefinition",
        "conditionalEventDefinition",
        "signalEventDefinition",
        "timerEventDefinition",
    }
)
_END = frozenset(
    {
        "messageEventDefinition",
        "escalationEventDefinition",
        "errorEventDefinition",
        "cancelEventDefinition",
        "compensateEventDefinition",
        "signalEventDefinition",
        "terminateEventDefinition",
    }
)
_CATCH = frozenset(
    {
        "messageEventDefinition",
        "timerEventDefinition",
        "conditionalEventDefinition",
        "linkEventDefinition",
        "signalEventDefinition",
    }
)
_THROW = frozenset(
    {
        "messageEventDefinition",
        "escalationEventDefinition",
        "compensateEventDefinition",
        "linkEventDefinition",
        "signalEventDefinition",
    }
)
_BOUNDARY = frozenset(
    {
        "messageEventDefinition",
        "timerEventDefinition",
        "errorEventDefinition",
        "escalationEventDefinition",
        "cancelEventDefinition",
        "compensateEventDefinition",
        "conditionalEventDefinition",
        "signalEventDefinition",
    }
)
_ALWAYS_INTERRUPTING = frozenset(
    {"errorEventDefinition", "cancelEventDefinition", "compensateEventDefinition"}
)


def _short(tag: str) -> str:
    return tag.removesuffix("EventDefinition")


def check_event_definitions(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged(*EVENT_TAGS):
        defs = _ref_defs(ctx, info)
        container = ctx.index.by_id.get(info.container or "")
        if info.tag == "startEvent":
            if _is_event_subprocess(container):
                allowed = _EVENT_SUB_START
                if not defs:
                    yield info.problem(
                        f"{label(info)} starts an event subprocess but has no trigger; give it a "
                        "message, timer, signal, error, escalation, conditional or compensation "
                        "definition."
                    )
                elif (info.get("isInterrupting") or "true") == "false":
                    for tag in defs:
                        if tag in ("errorEventDefinition", "compensateEventDefinition"):
                            yield info.problem(
                                f"{label(info)} is non-interrupting but has a {_short(tag)} trigger, "
                                "which always interrupts."
                            )
            elif container is not None and container.tag != "process":
                allowed = frozenset()
                if defs:
                    yield info.problem(
                        f"{label(info)} starts an embedded subprocess and must not have a trigger "
                        f"({_short(defs[0])})."
                    )
            else:
                allowed = _TOP_START
        elif info.tag == "endEvent":
            allowed = _END
            if "cancelEventDefinition" in defs and (container is None or container.tag != "transaction"):
                yield info.problem(f"{label(info)} is a cancel end event outside a transaction subprocess.")
        elif info.tag == "intermediateCatchEvent":
            allowed = _CATCH
            if not defs:
                yield info.problem(
                    f"{label(info)} catches nothing: an intermediate catch event needs a message, "
                    "timer, signal, conditional or link definition."
                )
        elif info.tag == "intermediateThrowEvent":
            allowed = _THROW
        else:
            allowed = _BOUNDARY
            yield from _boundary_rules(ctx, info, defs)
        for tag in defs:
            if allowed and tag not in allowed:
                yield info.problem(
                    f"{label(info)} has a {_short(tag)} definition, which a {info.tag} cannot have."
                )
        if len(defs) > 1 and (info.get("parallelMultiple") or "false") not in ("true", "false"):
            yield info.problem(f"{label(info)} has an invalid parallelMultiple value.")


def _boundary_rules(ctx: Context, info: Info, defs: list[str]) -> Iterator[ValidationProblem]:
    if not defs:
        yield info.problem(f"{label(info)} has no event definition; a boundary event needs a trigger.")
        return
    interrupting = (info.get("cancelActivity") or "true") != "false"
    host = ctx.index.by_id.get((info.get("attachedToRef") or "").rpartition(":")[2])
    for tag in defs:
        if tag in _ALWAYS_INTERRUPTING and not interrupting:
            yield info.problem(
                f"{label(info)} is non-interrupting but has a {_short(tag)} trigger, which always interrupts."
            )
        if tag == "cancelEventDefinition" and host is not None and host.tag != "transaction":
            yield info.problem(
                f"{label(info)} is a cancel boundary event attached to {label(host, capital=False)}, "
                "which is not a transaction."
            )


def check_message_refs(ctx: Context) -> Iterator[ValidationProblem]:
    """The engine correlates messages by name, so an executable message event must name one."""
    for info in ctx.index.tagged("messageEventDefinition"):
        if info.get("messageRef") or not ctx.executable(info):
            continue
        parent = info.elem.getparent()
        owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        where = owner or info
        yield where.problem(
            f"{label(where)} is a message event without messageRef, so it is unclear which "
            "message it sends or waits for."
        )
    # BPMN's executable rule wants an operationRef on every message event. Modelers that correlate
    # by message name (Camunda style) never write one, so the rule is applied only where the
    # document uses BPMN's typed-message style: the message declares its payload (itemRef).
    for info in ctx.index.tagged("messageEventDefinition"):
        message = ctx.index.by_id.get((info.get("messageRef") or "").rpartition(":")[2])
        if message is None or not message.get("itemRef") or not ctx.executable(info):
            continue
        if info.get("operationRef") or any(bpmn_local(c) == "operationRef" for c in info.elem):
            continue
        parent = info.elem.getparent()
        owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        where = owner or info
        yield where.problem(
            f"{label(where)} exchanges typed message '{message.ident}' (it has an itemRef) but "
            "names no operationRef; an executable process must say which operation carries it."
        )


def check_escalation_codes(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged("escalationEventDefinition"):
        parent = info.elem.getparent()
        owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        if owner is None or owner.tag not in ("endEvent", "intermediateThrowEvent"):
            continue
        ref = (info.get("escalationRef") or "").rpartition(":")[2]
        target = ctx.index.by_id.get(ref) if ref else None
        if not ref:
            yield owner.problem(
                f"{label(owner)} throws an escalation but names none (escalationRef is missing)."
            )
        elif target is not None and target.tag == "escalation" and not target.get("escalationCode"):
            yield owner.problem(f"{label(owner)} throws escalation '{ref}', which has no escalationCode.")


def check_event_flows(ctx: Context) -> Iterator[ValidationProblem]:
    incoming, outgoing = _flows(ctx)
    links: dict[tuple[str | None, str], list[Info]] = {}
    throws: list[tuple[Info, str]] = []
    for info in ctx.index.tagged(
        "intermediateCatchEvent", "intermediateThrowEvent", "startEvent", "endEvent"
    ):
        ident = info.ident or ""
        has_in, has_out = bool(incoming.get(ident)), bool(outgoing.get(ident))
        defs = _defs(info)
        is_link = "linkEventDefinition" in defs
        if info.tag == "startEvent" and not has_out:
            yield info.problem(f"{label(info)} has no outgoing sequence flow.")
        elif info.tag == "endEvent" and not has_in:
            yield info.problem(f"{label(info)} has no incoming sequence flow.")
        elif is_link:
            name = ""
            for child in info.elem:
                if bpmn_local(child) == "linkEventDefinition":
                    name = child.get("name") or ""
            if info.tag == "intermediateCatchEvent":
                links.setdefault((info.process, name), []).append(info)
                if has_in:
                    yield info.problem(
                        f"{label(info)} is a link catch event and must not have incoming flows."
                    )
            elif info.tag == "intermediateThrowEvent":
                throws.append((info, name))
                if has_out:
                    yield info.problem(
                        f"{label(info)} is a link throw event and must not have outgoing flows."
                    )
        elif info.tag in ("intermediateCatchEvent", "intermediateThrowEvent"):
            if not has_in:
                yield info.problem(f"{label(info)} has no incoming sequence flow.")
            if not has_out:
                yield info.problem(f"{label(info)} has no outgoing sequence flow.")
            if info.tag == "intermediateCatchEvent" and "compensateEventDefinition" in defs:
                yield info.problem(
                    f"{label(info)} catches compensation in normal flow; use a compensation "
                    "boundary event instead."
                )
    # A link pair is matched by name, or explicitly by <target>/<source> between the definitions.
    explicit: dict[str, Info] = {}  # link definition id -> its catch event
    for catches in links.values():
        for catch in catches:
            for child in catch.elem:
                if bpmn_local(child) == "linkEventDefinition" and child.get("id"):
                    explicit[child.get("id") or ""] = catch
    matched: set[str] = set()
    for info, name in throws:
        wanted = [
            (t.text or "").strip()
            for d in info.elem
            if bpmn_local(d) == "linkEventDefinition"
            for t in d
            if bpmn_local(t) == "target"
        ]
        catches = [explicit[w] for w in wanted if w in explicit] or links.get((info.process, name), [])
        same_level = [c for c in catches if c.container == info.container]
        if not catches:
            yield info.problem(f"{label(info)} throws link '{name}', but no link catch event has that name.")
        elif len(catches) > 1:
            yield info.problem(f"{label(info)} throws link '{name}', which more than one catch event has.")
        elif not same_level:
            yield info.problem(
                f"{label(info)} throws link '{name}' to a catch event on another process level."
            )
        matched.update(c.ident or "" for c in catches)
    for (_, name), catches in links.items():
        for info in catches:
            if (info.ident or "") not in matched:
                yield info.problem(
                    f"{label(info)} catches link '{name}', but no link throw event leads to it."
                )


def check_timer_shape(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged("timerEventDefinition"):
        parts = [
            bpmn_local(c) for c in info.elem if bpmn_local(c) in ("timeDate", "timeDuration", "timeCycle")
        ]
        if len(parts) > 1:
            parent = info.elem.getparent()
            owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
            where = owner or info
            yield where.problem(
                f"{label(where)} has a timer with {' and '.join(p or '' for p in parts)}; "
                "a timer has exactly one of them."
            )


# --- gateways -------------------------------------------------------------------------------

_EVENT_GATEWAY_TARGET_DEFS = frozenset(
    {"messageEventDefinition", "signalEventDefinition", "timerEventDefinition", "conditionalEventDefinition"}
)


def check_gateways(ctx: Context) -> Iterator[ValidationProblem]:
    incoming, outgoing = _flows(ctx)
    for info in ctx.index.tagged(*GATEWAY_TAGS):
        ident = info.ident or ""
        ins, outs = incoming.get(ident, []), outgoing.get(ident, [])
        direction = info.get("gatewayDirection") or "Unspecified"
        if len(ins) <= 1 and len(outs) <= 1 and outs:
            yield info.problem(
                f"{label(info)} neither splits nor merges the flow (it has {len(ins)} incoming "
                f"and {len(outs)} outgoing sequence flow)."
            )
        if direction == "Converging" and len(outs) > 1:
            yield info.problem(f"{label(info)} is converging but has {len(outs)} outgoing sequence flows.")
        elif direction == "Diverging" and len(ins) > 1:
            yield info.problem(f"{label(info)} is diverging but has {len(ins)} incoming sequence flows.")
        elif direction == "Mixed" and (len(ins) < 2 or len(outs) < 2):
            yield info.problem(
                f"{label(info)} is mixed, so it needs several incoming and several outgoing sequence flows."
            )
        if info.tag == "eventBasedGateway":
            yield from _event_gateway(ctx, info, ins, outs, incoming)


def _event_gateway(
    ctx: Context, info: Info, ins: list[Info], outs: list[Info], incoming: dict[str, list[Info]]
) -> Iterator[ValidationProblem]:
    if len(outs) < 2:
        yield info.problem(f"{label(info)} is an event-based gateway and needs at least two outgoing flows.")
    if (info.get("gatewayDirection") or "Diverging") not in ("Diverging", "Unspecified"):
        yield info.problem(f"{label(info)} is an event-based gateway, which can only diverge.")
    if (info.get("instantiate") or "false") == "true" and ins:
        yield info.problem(f"{label(info)} instantiates the process and must not have incoming flows.")
    kinds: set[str] = set()
    for flow in outs:
        if any(bpmn_local(c) == "conditionExpression" for c in flow.elem):
            yield flow.problem(
                f"{label(flow)} leaves event-based gateway '{info.ident}' with a condition; "
                "the first event decides, so it cannot have one."
            )
        target = ctx.index.by_id.get(flow.get("targetRef") or "")
        if target is None:
            continue
        if len(incoming.get(target.ident or "", [])) > 1:
            yield target.problem(
                f"{label(target)} follows event-based gateway '{info.ident}' and must not have "
                "other incoming sequence flows."
            )
        if target.tag == "receiveTask":
            kinds.add("receiveTask")
            if any(b.get("attachedToRef") == target.ident for b in ctx.index.tagged("boundaryEvent")):
                yield target.problem(
                    f"{label(target)} follows event-based gateway '{info.ident}' and must not have "
                    "boundary events."
                )
            continue
        defs = _ref_defs(ctx, target)
        if (
            target.tag != "intermediateCatchEvent"
            or not defs
            or any(d not in _EVENT_GATEWAY_TARGET_DEFS for d in defs)
        ):
            yield info.problem(
                f"{label(info)} leads to {label(target, capital=False)}; an event-based gateway may only "
                "lead to receive tasks or message, signal, timer or conditional catch events."
            )
        if "messageEventDefinition" in defs:
            kinds.add("message")
    if kinds == {"receiveTask", "message"}:
        yield info.problem(
            f"{label(info)} mixes receive tasks and message catch events; use one or the other."
        )


# --- subprocesses ---------------------------------------------------------------------------


def check_subprocesses(ctx: Context) -> Iterator[ValidationProblem]:
    incoming, outgoing = _flows(ctx)
    members: dict[str, list[Info]] = {}
    for tag in FLOW_NODE_TAGS:
        for info in ctx.index.tagged(tag):
            members.setdefault(info.container or "", []).append(info)
    for info in ctx.index.tagged("subProcess", "transaction", "adHocSubProcess", "process"):
        inside = members.get(info.ident or "", [])
        starts = [m for m in inside if m.tag == "startEvent"]
        ends = [m for m in inside if m.tag == "endEvent"]
        if _is_event_subprocess(info):
            if incoming.get(info.ident or "") or outgoing.get(info.ident or ""):
                yield info.problem(f"{label(info)} is an event subprocess and must not have sequence flows.")
            if len(starts) != 1:
                yield info.problem(
                    f"{label(info)} is an event subprocess and needs exactly one start event "
                    f"(it has {len(starts)})."
                )
        if info.tag == "adHocSubProcess":
            if not any(m.tag in ACTIVITY_TAGS for m in inside):
                yield info.problem(f"{label(info)} is an ad-hoc subprocess without any activity.")
            for node in starts + ends:
                yield node.problem(
                    f"{label(node)} is inside ad-hoc subprocess '{info.ident}', which cannot have "
                    "start or end events."
                )
            continue
        if info.tag != "process" and ends and not starts:
            yield info.problem(f"{label(info)} has an end event but no start event.")
        if info.tag != "process" and starts and not ends:
            yield info.problem(f"{label(info)} has a start event but no end event.")
        if info.tag == "process" and starts and not ends and any(m.tag != "startEvent" for m in inside):
            yield info.problem(f"{label(info)} has a start event but no end event.")
        yield from _implicit_flow_rules(ctx, info, inside, bool(starts), bool(ends), incoming, outgoing)


def _implicit_flow_rules(
    ctx: Context,
    container: Info,
    inside: list[Info],
    has_start: bool,
    has_end: bool,
    incoming: dict[str, list[Info]],
    outgoing: dict[str, list[Info]],
) -> Iterator[ValidationProblem]:
    """With start events, every node needs an incoming flow; with end events, an outgoing one."""
    for node in inside:
        if node.tag in ("startEvent", "endEvent", "boundaryEvent") or _is_event_subprocess(node):
            continue
        if (node.get("isForCompensation") or "false") == "true":
            continue
        defs = _defs(node)
        if "linkEventDefinition" in defs:
            continue
        ident = node.ident or ""
        instantiating = (node.get("instantiate") or "false") == "true"
        if (
            has_start
            and not incoming.get(ident)
            and not instantiating
            and node.tag not in ("intermediateCatchEvent", "intermediateThrowEvent")
        ):
            yield node.problem(
                f"{label(node)} has no incoming sequence flow, though {label(container, capital=False)} "
                "uses start events."
            )
        if (
            has_end
            and not outgoing.get(ident)
            and node.tag not in ("intermediateCatchEvent", "intermediateThrowEvent")
            and node.tag not in GATEWAY_TAGS
        ):
            yield node.problem(
                f"{label(node)} has no outgoing sequence flow, though {label(container, capital=False)} "
                "uses end events."
            )


# --- activities -----------------------------------------------------------------------------


def check_activity_rules(ctx: Context) -> Iterator[ValidationProblem]:
    incoming, outgoing = _flows(ctx)
    for info in ctx.index.tagged(*ACTIVITY_TAGS):
        ident = info.ident or ""
        markers = [
            bpmn_local(c)
            for c in info.elem
            if bpmn_local(c) in ("standardLoopCharacteristics", "multiInstanceLoopCharacteristics")
        ]
        if len(markers) > 1:
            yield info.problem(
                f"{label(info)} has more than one loop marker; an activity loops one way only."
            )
        if (
            info.tag == "receiveTask"
            and (info.get("instantiate") or "false") == "true"
            and incoming.get(ident)
        ):
            yield info.problem(f"{label(info)} instantiates the process and must not have incoming flows.")
        outs = outgoing.get(ident, [])
        conditional = [f for f in outs if any(bpmn_local(c) == "conditionExpression" for c in f.elem)]
        if conditional and len(outs) == 1:
            yield info.problem(
                f"{label(info)} has a single outgoing flow, and it is conditional; when the "
                "condition is false the token would be stuck."
            )
        if info.tag in ("subProcess", "transaction", "adHocSubProcess") and any(
            bpmn_local(c) == "ioSpecification" for c in info.elem
        ):
            yield info.problem(
                f"{label(info)} is a subprocess with an ioSpecification, which BPMN does not allow."
            )
        for child in info.elem:
            if bpmn_local(child) == "multiInstanceLoopCharacteristics" and ctx.executable(info):
                parts = {bpmn_local(c) for c in child}
                if not parts & {"loopCardinality", "loopDataInputRef"} and not _vendor_collection(child):
                    yield info.problem(
                        f"{label(info)} is multi-instance but says neither how many times "
                        "(loopCardinality) nor over which collection."
                    )


def _vendor_collection(elem: object) -> bool:
    from lxml import etree

    assert isinstance(elem, etree._Element)
    if any(str(k).endswith("}collection") for k in elem.attrib):
        return True
    return any(bpmn_local(c) == "extensionElements" and len(c) > 0 for c in elem)


def check_flow_attributes(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged("sequenceFlow"):
        if (info.get("isImmediate") or "") == "false" and ctx.executable(info):
            yield info.problem(
                f'{label(info)} has isImmediate="false", which an executable process cannot honour.'
            )
    for info in ctx.index.tagged("process"):
        if (info.get("processType") or "") == "Public" and (info.get("isExecutable") or "") == "true":
            yield info.problem(f"{label(info)} is a public process and so cannot be executable.")


def check_declared_flows(ctx: Context) -> Iterator[ValidationProblem]:
    """`<incoming>`/`<outgoing>` children, when a document uses them, must agree with the flows."""
    listed_in: dict[str, set[str]] = {}
    listed_out: dict[str, set[str]] = {}
    used = False
    for tag in FLOW_NODE_TAGS:
        for info in ctx.index.tagged(tag):
            for child in info.elem:
                local = bpmn_local(child)
                if local in ("incoming", "outgoing"):
                    used = True
                    table = listed_in if local == "incoming" else listed_out
                    table.setdefault(info.ident or "", set()).add((child.text or "").strip())
    if not used:
        return
    for flow in ctx.index.tagged("sequenceFlow"):
        ident = flow.ident or ""
        source, goal = flow.get("sourceRef") or "", flow.get("targetRef") or ""
        if source in ctx.index.by_id and ident not in listed_out.get(source, set()):
            yield flow.problem(
                f"{label(flow)} leaves '{source}', but '{source}' does not list it as outgoing."
            )
        if goal in ctx.index.by_id and ident not in listed_in.get(goal, set()):
            yield flow.problem(f"{label(flow)} enters '{goal}', but '{goal}' does not list it as incoming.")
    flows = {f.ident: f for f in ctx.index.tagged("sequenceFlow")}
    for node_id, refs in listed_out.items():
        for ref in refs:
            listed = flows.get(ref)
            node = ctx.index.by_id.get(node_id)
            if node is not None and (listed is None or listed.get("sourceRef") != node_id):
                yield node.problem(
                    f"{label(node)} lists '{ref}' as outgoing, but that sequence flow does not leave it."
                )
    for node_id, refs in listed_in.items():
        for ref in refs:
            listed = flows.get(ref)
            node = ctx.index.by_id.get(node_id)
            if node is not None and (listed is None or listed.get("targetRef") != node_id):
                yield node.problem(
                    f"{label(node)} lists '{ref}' as incoming, but that sequence flow does not enter it."
                )


def check_compensation(ctx: Context) -> Iterator[ValidationProblem]:
    """A compensation boundary event reaches its handler through an association."""
    handlers: dict[str, list[Info]] = {}
    for assoc in ctx.index.tagged("association"):
        source = (assoc.get("sourceRef") or "").rpartition(":")[2]
        target = ctx.index.by_id.get((assoc.get("targetRef") or "").rpartition(":")[2])
        if target is not None:
            handlers.setdefault(source, []).append(target)
    for info in ctx.index.tagged("boundaryEvent"):
        if "compensateEventDefinition" not in _defs(info):
            continue
        targets = [t for t in handlers.get(info.ident or "", []) if t.tag in ACTIVITY_TAGS]
        if not targets:
            yield info.problem(
                f"{label(info)} is a compensation boundary event but no association connects it to "
                "a compensation activity."
            )
        for target in targets:
            if (target.get("isForCompensation") or "false") != "true":
                yield info.problem(
                    f"{label(info)} is associated with {label(target, capital=False)}, which is not "
                    'marked isForCompensation="true".'
                )


def check_called_processes(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged("callActivity"):
        callee = ctx.index.by_id.get((info.get("calledElement") or "").rpartition(":")[2])
        if callee is None or callee.tag != "process":
            continue
        if not any(
            s.container == callee.ident
            and not _defs(s)
            and not any(bpmn_local(c) == "eventDefinitionRef" for c in s.elem)
            for s in ctx.index.tagged("startEvent")
        ):
            yield info.problem(
                f"{label(info)} calls {label(callee, capital=False)}, which has no none start "
                "event to begin with."
            )


# --- message flows and artifacts --------------------------------------------------------------

_INTERACTION = FLOW_NODE_TAGS - GATEWAY_TAGS | {"participant"}


def check_message_flows(ctx: Context) -> Iterator[ValidationProblem]:
    pools: dict[str, str] = {}
    for participant in ctx.index.tagged("participant"):
        ref = participant.get("processRef")
        if ref and participant.ident:
            pools[ref.rpartition(":")[2]] = participant.ident

    def pool_of(info: Info) -> str | None:
        if info.tag == "participant":
            return info.ident
        return pools.get(info.process or "", info.process)

    for flow in ctx.index.tagged("messageFlow"):
        ends: list[Info] = []
        for attr, role in (("sourceRef", "comes from"), ("targetRef", "goes to")):
            ref = (flow.get(attr) or "").rpartition(":")[2]
            node = ctx.index.by_id.get(ref)
            if node is None:
                yield flow.problem(f"{label(flow)} {role} '{ref}', which does not exist.")
                continue
            if node.tag not in _INTERACTION:
                yield flow.problem(
                    f"{label(flow)} {role} {label(node, capital=False)}; message flows connect only pools, "
                    "activities and events."
                )
                continue
            ends.append(node)
            defs = _defs(node)
            if attr == "sourceRef":
                if (
                    node.tag == "startEvent"
                    or node.tag == "intermediateCatchEvent"
                    or node.tag == "boundaryEvent"
                ):
                    yield flow.problem(
                        f"{label(flow)} comes from {label(node, capital=False)}, which cannot send messages."
                    )
                elif node.tag == "endEvent" and "messageEventDefinition" not in defs:
                    yield flow.problem(
                        f"{label(flow)} comes from {label(node, capital=False)}, which is not a message end "
                        "event."
                    )
            else:
                if node.tag == "endEvent" or node.tag == "intermediateThrowEvent":
                    yield flow.problem(
                        f"{label(flow)} goes to {label(node, capital=False)}, which cannot receive messages."
                    )
                elif node.tag == "startEvent" and "messageEventDefinition" not in defs:
                    yield flow.problem(
                        f"{label(flow)} goes to {label(node, capital=False)}, which is not a message start "
                        "event."
                    )
        if len(ends) == 2 and pool_of(ends[0]) == pool_of(ends[1]):
            yield flow.problem(
                f"{label(flow)} connects two elements of the same pool; use a sequence flow inside a pool."
            )


_MIME = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;.*)?")
_URI_ATTRS = (
    "language",
    "expressionLanguage",
    "typeLanguage",
    "method",
    "implementation",
    "importType",
    "namespace",
    "location",
)
_URI = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


def check_attribute_formats(ctx: Context) -> Iterator[ValidationProblem]:
    root = ctx.index.root
    for attr in ("expressionLanguage", "typeLanguage"):
        value = root.get(attr)
        if value is not None and _URI.fullmatch(value) is None:
            yield ValueProblem.root(ctx, f'The definitions\' {attr} "{value}" is not a valid URI.')
    for infos in ctx.index.by_tag.values():
        for info in infos:
            attrib = info.elem.attrib
            fmt = attrib.get("textFormat")
            if fmt is not None and _MIME.fullmatch(str(fmt)) is None:
                yield info.problem(
                    f'{label(info)} has textFormat "{fmt}", which is not a MIME type such as text/plain.'
                )
            for attr in _URI_ATTRS:
                value = attrib.get(attr)
                if value is not None and _URI.fullmatch(str(value)) is None:
                    yield info.problem(f'{label(info)} has {attr}="{value}", which is not a valid URI.')
    for info in ctx.index.tagged("property"):
        if info.parent_tag == "definitions":
            yield info.problem(
                f"{label(info)} is declared directly in definitions; a property belongs to a "
                "process, activity or event."
            )


class ValueProblem:
    @staticmethod
    def root(ctx: Context, message: str) -> ValidationProblem:
        root = ctx.index.root
        line = root.sourceline if isinstance(root.sourceline, int) else 1
        return ValidationProblem(message, element_id=root.get("id"), tag="definitions", line=line)


def check_resources(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged("performer", "humanPerformer", "potentialOwner", "resourceRole"):
        parts = [bpmn_local(c) for c in info.elem]
        has_ref = "resourceRef" in parts
        if "resourceParameterBinding" in parts and not has_ref:
            yield info.problem(f"{label(info)} binds resource parameters without naming a resource.")
        if "resourceAssignmentExpression" in parts and (has_ref or "resourceParameterBinding" in parts):
            yield info.problem(
                f"{label(info)} has both a resource reference and a resource assignment "
                "expression; use one of them."
            )


# --- expressions ----------------------------------------------------------------------------

# Expressions flowcore evaluates as written even without xsi:type (modelers often omit it there).
_LENIENT_EXPRESSIONS = frozenset({"conditionExpression", "condition"})
_EXPRESSIONS = frozenset(
    {
        "conditionExpression",
        "condition",
        "timeDate",
        "timeDuration",
        "timeCycle",
        "loopCardinality",
        "completionCondition",
        "loopCondition",
        "activationCondition",
        "from",
        "to",
        "transformation",
        "messagePath",
        "dataPath",
    }
)
_BOOLEAN_EXPRESSIONS = frozenset(
    {"conditionExpression", "condition", "completionCondition", "loopCondition", "activationCondition"}
)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def check_expressions(ctx: Context) -> Iterator[ValidationProblem]:
    for tag in _EXPRESSIONS:
        for info in ctx.index.tagged(tag):
            where = _owner(ctx, info)
            body = text_of(info.elem)
            formal = (info.elem.get(_XSI_TYPE) or "").rpartition(":")[2] == "tFormalExpression"
            if not body:
                yield where.problem(f"{label(where)} has an empty {tag}; an expression needs a body.")
                continue
            if tag in _BOOLEAN_EXPRESSIONS and _NUMBER.fullmatch(body):
                yield where.problem(f"{label(where)} has {tag} '{body}', which is a number, not a condition.")
            if not formal and tag not in _LENIENT_EXPRESSIONS and ctx.executable(info):
                yield where.problem(
                    f'{label(where)} has a {tag} without xsi:type="tFormalExpression"; in an '
                    "executable process BPMN reads that as natural-language text."
                )


def _owner(ctx: Context, info: Info) -> Info:
    elem = info.elem.getparent()
    while elem is not None:
        ident = elem.get("id")
        found = ctx.index.by_id.get(ident) if ident else None
        if found is not None:
            return found
        elem = elem.getparent()
    return info


SPEC_CHECKS: tuple[Check, ...] = (
    check_event_definitions,
    check_escalation_codes,
    check_message_refs,
    check_event_flows,
    check_timer_shape,
    check_gateways,
    check_subprocesses,
    check_activity_rules,
    check_flow_attributes,
    check_declared_flows,
    check_message_flows,
    check_compensation,
    check_called_processes,
    check_attribute_formats,
    check_resources,
    check_expressions,
)
