"""Every id reference in a document must name an element of the kind the reference expects.

One table lists, for each (element, attribute-or-child) holding a reference, the tags it may
point to; one pass over the indexed elements checks them all.
"""

from __future__ import annotations

from collections.abc import Iterator

from domain.builders import bpmn_local
from domain.errors import ValidationProblem
from domain.validation import ACTIVITY_TAGS, FLOW_NODE_TAGS, Context, label

_ITEM_AWARE = frozenset(
    {
        "dataObject",
        "dataObjectReference",
        "dataStoreReference",
        "dataInput",
        "dataOutput",
        "property",
        "dataStore",
    }
)
_EVENT_DEFINITIONS = frozenset(
    {
        "terminateEventDefinition",
        "errorEventDefinition",
        "escalationEventDefinition",
        "timerEventDefinition",
        "messageEventDefinition",
        "signalEventDefinition",
        "conditionalEventDefinition",
        "linkEventDefinition",
        "compensateEventDefinition",
        "cancelEventDefinition",
    }
)
_CALLABLE = frozenset(
    {
        "process",
        "globalTask",
        "globalUserTask",
        "globalScriptTask",
        "globalManualTask",
        "globalBusinessRuleTask",
    }
)
_ITEM = frozenset({"itemDefinition"})

# (owner tag or "*", attribute) -> tags the referenced element may have
_ATTRIBUTE_REFS: dict[tuple[str, str], frozenset[str]] = {
    ("messageFlow", "messageRef"): frozenset({"message"}),
    ("message", "itemRef"): _ITEM,
    ("*", "itemSubjectRef"): _ITEM,
    ("error", "structureRef"): _ITEM,
    ("escalation", "structureRef"): _ITEM,
    ("signal", "structureRef"): _ITEM,
    ("boundaryEvent", "attachedToRef"): ACTIVITY_TAGS,
    ("process", "definitionalCollaborationRef"): frozenset({"collaboration"}),
    ("correlationPropertyRetrievalExpression", "messageRef"): frozenset({"message"}),
    ("participant", "processRef"): frozenset({"process"}),
    ("sendTask", "operationRef"): frozenset({"operation"}),
    ("receiveTask", "operationRef"): frozenset({"operation"}),
    ("serviceTask", "operationRef"): frozenset({"operation"}),
    ("sendTask", "messageRef"): frozenset({"message"}),
    ("receiveTask", "messageRef"): frozenset({"message"}),
    ("dataObjectReference", "dataObjectRef"): frozenset({"dataObject"}),
    ("dataStoreReference", "dataStoreRef"): frozenset({"dataStore"}),
    ("group", "categoryValueRef"): frozenset({"categoryValue"}),
    ("resourceParameterBinding", "parameterRef"): frozenset({"resourceParameter"}),
    ("ioBinding", "operationRef"): frozenset({"operation"}),
    ("ioBinding", "inputDataRef"): frozenset({"dataInput"}),
    ("ioBinding", "outputDataRef"): frozenset({"dataOutput"}),
    ("compensateEventDefinition", "activityRef"): ACTIVITY_TAGS,
    ("callActivity", "calledElement"): _CALLABLE,
}

# (owner tag, child tag) -> tags the child's text may name
_CHILD_REFS: dict[tuple[str, str], frozenset[str]] = {
    ("*", "eventDefinitionRef"): _EVENT_DEFINITIONS,
    ("*", "correlationPropertyRef"): frozenset({"correlationProperty"}),
    ("operation", "errorRef"): frozenset({"error"}),
    ("operation", "inMessageRef"): frozenset({"message"}),
    ("operation", "outMessageRef"): frozenset({"message"}),
    ("*", "interfaceRef"): frozenset({"interface"}),
    ("*", "supportedInterfaceRef"): frozenset({"interface"}),
    ("*", "participantRef"): frozenset({"participant"}),
    ("messageEventDefinition", "operationRef"): frozenset({"operation"}),
    ("*", "dataInputRefs"): frozenset({"dataInput"}),
    ("*", "optionalInputRefs"): frozenset({"dataInput"}),
    ("*", "whileExecutingInputRefs"): frozenset({"dataInput"}),
    ("*", "dataOutputRefs"): frozenset({"dataOutput"}),
    ("*", "optionalOutputRefs"): frozenset({"dataOutput"}),
    ("*", "whileExecutingOutputRefs"): frozenset({"dataOutput"}),
    ("*", "inputSetRefs"): frozenset({"inputSet"}),
    ("*", "outputSetRefs"): frozenset({"outputSet"}),
    ("dataInputAssociation", "sourceRef"): _ITEM_AWARE,
    ("dataInputAssociation", "targetRef"): _ITEM_AWARE,
    ("dataOutputAssociation", "sourceRef"): _ITEM_AWARE,
    ("dataOutputAssociation", "targetRef"): _ITEM_AWARE,
    ("*", "resourceRef"): frozenset({"resource"}),
    ("lane", "flowNodeRef"): FLOW_NODE_TAGS,
    ("*", "loopDataInputRef"): _ITEM_AWARE,
    ("*", "loopDataOutputRef"): _ITEM_AWARE,
    ("*", "categoryValueRef"): frozenset({"categoryValue"}),
}

# may name another deployed process, an external type, or is reported by the engine checks
_MAY_BE_EXTERNAL = frozenset({"calledElement", "attachedToRef", "structureRef"})
# flowcore reads these as variable names when no element has that id
_MAY_NAME_VARIABLES = frozenset({"loopDataInputRef", "loopDataOutputRef"})

_ATTRS_BY_NAME: dict[str, list[tuple[str, frozenset[str]]]] = {}
for (_owner, _attr), _tags in _ATTRIBUTE_REFS.items():
    _ATTRS_BY_NAME.setdefault(_attr, []).append((_owner, _tags))
_CHILD_TAGS = frozenset(child for _, child in _CHILD_REFS)


def _wanted(table: dict[tuple[str, str], frozenset[str]], owner: str, name: str) -> frozenset[str] | None:
    return table.get((owner, name)) or table.get(("*", name))


def _describe(tags: frozenset[str]) -> str:
    names = sorted(tags)
    return names[0] if len(names) == 1 else "one of " + ", ".join(names[:6]) + ("…" if len(names) > 6 else "")


def check_references(ctx: Context) -> Iterator[ValidationProblem]:
    by_id = ctx.index.by_id
    for tag, infos in ctx.index.by_tag.items():
        for info in infos:
            for attr, value in info.elem.attrib.items():
                if not isinstance(attr, str) or attr.startswith("{") or attr not in _ATTRS_BY_NAME:
                    continue
                wanted = _wanted(_ATTRIBUTE_REFS, tag, attr)
                if wanted is None:
                    continue
                value = str(value)
                ident = value.rpartition(":")[2].strip()
                target = by_id.get(ident)
                if target is None:
                    if attr not in _MAY_BE_EXTERNAL and ident:
                        yield info.problem(f'{label(info)} has {attr}="{value}", which names no element.')
                elif target.tag not in wanted:
                    yield info.problem(
                        f'{label(info)} has {attr}="{value}", which is {label(target, capital=False)}, '
                        f"not {_describe(wanted)}."
                    )
            if tag not in _CHILD_TAGS:
                continue
            parent = info.elem.getparent()
            owner = bpmn_local(parent) if parent is not None else None
            wanted = _wanted(_CHILD_REFS, owner or "", tag)
            if wanted is None:
                continue
            ident = (info.elem.text or "").strip().rpartition(":")[2]
            where = by_id.get(parent.get("id") or "") if parent is not None else None
            where = where or info
            target = by_id.get(ident)
            if not ident:
                yield where.problem(f"{label(where)} has an empty <{tag}>.")
            elif target is None:
                if tag not in _MAY_NAME_VARIABLES:
                    yield where.problem(f"{label(where)} has <{tag}>{ident}</{tag}>, which names no element.")
            elif target.tag not in wanted:
                yield where.problem(
                    f"{label(where)} has <{tag}>{ident}</{tag}>, which is "
                    f"{label(target, capital=False)}, not {_describe(wanted)}."
                )
