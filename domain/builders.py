"""The table from BPMN tag to the function that turns one flow-node element into a `Node`.

Builders read only the element itself and its direct children (one pass over them); flows
are attached later by the parser, which derives incoming/outgoing from the sequence flows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from lxml import etree

from domain.model import EventDefinition, EventKind, LoopSpec, Node, NodeKind
from domain.xml_loader import BPMN_NS

_NS = "{" + BPMN_NS + "}"
_NS_LEN = len(_NS)


def local_ref(value: str | None) -> str | None:
    """A reference attribute may be a QName (`tns:Error_1`); ids never contain a colon."""
    if value is None:
        return None
    value = value.strip()
    return value.rpartition(":")[2] if value else None


def bpmn_local(elem: etree._Element) -> str | None:
    """Local name of a BPMN-namespace element, None for anything else (DI, vendor, comments)."""
    tag = elem.tag
    if isinstance(tag, str) and tag.startswith(_NS):
        return tag[_NS_LEN:]
    return None


def any_local(elem: etree._Element) -> str | None:
    tag = elem.tag
    if not isinstance(tag, str):
        return None
    return tag.rpartition("}")[2]


def text_of(elem: etree._Element) -> str:
    return "".join(cast("Iterator[str]", elem.itertext())).strip()


def line_of(elem: etree._Element) -> int:
    line = elem.sourceline
    return line if isinstance(line, int) else 0


def parse_bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() == "true"


def parse_int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        return default


def vendor_attr(elem: etree._Element, local: str) -> str | None:
    """An attribute in any non-BPMN namespace (camunda:, zeebe:, flowable:...) by local name."""
    suffix = "}" + local
    for key, value in cast("Iterable[tuple[str, str]]", elem.attrib.items()):
        if key.endswith(suffix) and key.startswith("{") and not key.startswith(_NS):
            return value
    return None


@dataclass(frozen=True, slots=True)
class RefTables:
    """Document-level elements that node attributes refer to by id."""

    errors: Mapping[str, str]
    messages: Mapping[str, str]
    signals: Mapping[str, str]
    escalations: Mapping[str, str]
    # event definitions declared at definitions level, for `eventDefinitionRef`
    event_definitions: Mapping[str, etree._Element]


@dataclass(slots=True)
class _Children:
    """What a node's direct children contribute, gathered in one pass."""

    properties: dict[str, str] = field(default_factory=dict)
    script: str | None = None
    events: list[EventDefinition] = field(default_factory=list)
    loop: LoopSpec | None = None
    assignee: str | None = None
    candidate_groups: str | None = None


_EVENT_KINDS: dict[str, EventKind] = {
    "terminateEventDefinition": EventKind.TERMINATE,
    "errorEventDefinition": EventKind.ERROR,
    "escalationEventDefinition": EventKind.ESCALATION,
    "timerEventDefinition": EventKind.TIMER,
    "messageEventDefinition": EventKind.MESSAGE,
    "signalEventDefinition": EventKind.SIGNAL,
    "conditionalEventDefinition": EventKind.CONDITIONAL,
    "linkEventDefinition": EventKind.LINK,
    "compensateEventDefinition": EventKind.COMPENSATE,
    "cancelEventDefinition": EventKind.CANCEL,
}

_TIMER_PARTS = ("timeDuration", "timeDate", "timeCycle")


def event_definition(elem: etree._Element, kind: EventKind, refs: RefTables) -> EventDefinition:
    """Resolve one `*EventDefinition` element to what the engine matches on."""
    if kind is EventKind.ERROR:
        ref = local_ref(elem.get("errorRef"))
        return EventDefinition(kind, code=refs.errors.get(ref) if ref else None, ref=ref)
    if kind is EventKind.ESCALATION:
        ref = local_ref(elem.get("escalationRef"))
        return EventDefinition(kind, code=refs.escalations.get(ref) if ref else None, ref=ref)
    if kind is EventKind.MESSAGE:
        ref = local_ref(elem.get("messageRef"))
        return EventDefinition(kind, code=refs.messages.get(ref) if ref else None, ref=ref)
    if kind is EventKind.SIGNAL:
        ref = local_ref(elem.get("signalRef"))
        return EventDefinition(kind, code=refs.signals.get(ref) if ref else None, ref=ref)
    if kind is EventKind.TIMER:
        for child in elem:
            part = bpmn_local(child)
            if part in _TIMER_PARTS:
                return EventDefinition(kind, timer_type=part, timer_value=text_of(child))
        return EventDefinition(kind)
    if kind is EventKind.CONDITIONAL:
        for child in elem:
            if bpmn_local(child) == "condition":
                return EventDefinition(kind, code=text_of(child) or None)
        return EventDefinition(kind)
    if kind is EventKind.LINK:
        return EventDefinition(kind, code=elem.get("name"))
    if kind is EventKind.COMPENSATE:
        return EventDefinition(kind, ref=local_ref(elem.get("activityRef")))
    return EventDefinition(kind)


def _properties(ext: etree._Element, into: dict[str, str]) -> None:
    for holder in ext:
        if any_local(holder) != "properties":
            continue
        for prop in holder:
            if any_local(prop) != "property":
                continue
            name = prop.get("name")
            if not name:
                continue
            value = prop.get("value")
            into[name.strip().lower()] = value if value is not None else text_of(prop)


def _extension(ext: etree._Element, found: _Children) -> None:
    _properties(ext, found.properties)
    for child in ext:
        if any_local(child) == "assignmentDefinition":  # Zeebe-style user task assignment
            found.assignee = found.assignee or child.get("assignee")
            found.candidate_groups = found.candidate_groups or child.get("candidateGroups")


def _multi_instance(elem: etree._Element) -> LoopSpec:
    cardinality = condition = collection = element_variable = None
    for child in elem:
        local = bpmn_local(child)
        if local == "loopCardinality":
            cardinality = text_of(child) or None
        elif local == "completionCondition":
            condition = text_of(child) or None
        elif local == "loopDataInputRef":
            collection = text_of(child) or None
        elif local == "inputDataItem":
            element_variable = child.get("name") or child.get("id")
        elif local == "extensionElements":
            for ext in child:
                if any_local(ext) == "loopCharacteristics":  # Zeebe-style collection binding
                    collection = collection or ext.get("inputCollection")
                    element_variable = element_variable or ext.get("inputElement")
    return LoopSpec(
        kind="multiInstance",
        sequential=parse_bool(elem.get("isSequential"), False),
        cardinality=cardinality,
        condition=condition,
        collection=collection or vendor_attr(elem, "collection"),
        element_variable=element_variable or vendor_attr(elem, "elementVariable"),
    )


def _standard_loop(elem: etree._Element) -> LoopSpec:
    condition = None
    for child in elem:
        if bpmn_local(child) == "loopCondition":
            condition = text_of(child) or None
    maximum = elem.get("loopMaximum")
    return LoopSpec(
        kind="standard",
        condition=condition,
        maximum=parse_int(maximum, 0) if maximum is not None else None,
        test_before=parse_bool(elem.get("testBefore"), False),
    )


def _scan(elem: etree._Element, refs: RefTables) -> _Children:
    found = _Children()
    for child in elem:
        local = bpmn_local(child)
        if local is None:
            continue
        kind = _EVENT_KINDS.get(local)
        if kind is not None:
            found.events.append(event_definition(child, kind, refs))
        elif local == "extensionElements":
            _extension(child, found)
        elif local == "script":
            found.script = text_of(child)
        elif local == "eventDefinitionRef":
            ref = local_ref(child.text)
            target = refs.event_definitions.get(ref) if ref else None
            if target is not None:
                target_kind = _EVENT_KINDS.get(bpmn_local(target) or "")
                if target_kind is not None:
                    found.events.append(event_definition(target, target_kind, refs))
        elif local == "multiInstanceLoopCharacteristics":
            found.loop = _multi_instance(child)
        elif local == "standardLoopCharacteristics":
            found.loop = _standard_loop(child)
    return found


Builder = Callable[[etree._Element, NodeKind, "str | None", RefTables], Node]


def _frozen(props: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(props) if props else MappingProxyType({})


def build_node(elem: etree._Element, kind: NodeKind, scope: str | None, refs: RefTables) -> Node:
    """Every flow node: the attributes and children that apply to its kind are filled."""
    found = _scan(elem, refs)
    assignee = candidate_groups = None
    if kind is NodeKind.USER_TASK or kind is NodeKind.MANUAL_TASK:
        assignee = vendor_attr(elem, "assignee") or found.assignee
        candidate_groups = (
            vendor_attr(elem, "candidateGroups")
            or found.candidate_groups
            or found.properties.get("responsibleteam")
        )
    attached_to = cancel_activity = None
    if kind is NodeKind.BOUNDARY_EVENT:
        attached_to = local_ref(elem.get("attachedToRef"))
        cancel_activity = parse_bool(elem.get("cancelActivity"), True)
    return Node(
        id=elem.get("id") or "",
        kind=kind,
        name=(elem.get("name") or "").strip(),
        line=line_of(elem),
        scope=scope,
        default_flow=elem.get("default"),
        properties=_frozen(found.properties),
        script=found.script,
        script_format=elem.get("scriptFormat"),
        events=tuple(found.events),
        attached_to=attached_to,
        cancel_activity=True if cancel_activity is None else cancel_activity,
        called_element=local_ref(elem.get("calledElement")) if kind is NodeKind.CALL_ACTIVITY else None,
        assignee=assignee,
        candidate_groups=candidate_groups,
        loop=found.loop,
        start_quantity=parse_int(elem.get("startQuantity"), 1),
        completion_quantity=parse_int(elem.get("completionQuantity"), 1),
        is_for_compensation=parse_bool(elem.get("isForCompensation"), False),
        triggered_by_event=parse_bool(elem.get("triggeredByEvent"), False),
    )


# BPMN tag -> (kind, builder). Every flow node currently shares one builder, because each
# attribute is read only where its kind uses it; a kind that needs more gets its own entry.
NODE_BUILDERS: Mapping[str, tuple[NodeKind, Builder]] = MappingProxyType(
    {kind.value: (kind, build_node) for kind in NodeKind}
)

# Global (reusable) tasks a call activity may invoke, by tag, with the kind they run as.
GLOBAL_TASK_KINDS: Mapping[str, NodeKind] = MappingProxyType(
    {
        "globalTask": NodeKind.TASK,
        "globalUserTask": NodeKind.USER_TASK,
        "globalScriptTask": NodeKind.SCRIPT_TASK,
        "globalManualTask": NodeKind.MANUAL_TASK,
        "globalBusinessRuleTask": NodeKind.BUSINESS_RULE_TASK,
    }
)

EVENT_DEFINITION_TAGS: Mapping[str, EventKind] = MappingProxyType(_EVENT_KINDS)
