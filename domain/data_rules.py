"""BPMN 2.0's static rules about data: ioSpecifications, item definitions, data states.

flowcore passes data as JSON variables and does not execute BPMN data associations, but a
document that declares them inconsistently is refused, with the inconsistent element named.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from domain.builders import bpmn_local
from domain.document_index import Info
from domain.errors import ValidationProblem
from domain.validation import Check, Context, label


def _ref(value: str | None) -> str:
    return (value or "").strip().rpartition(":")[2]


def _children(elem: etree._Element, tag: str) -> list[etree._Element]:
    return [c for c in elem if bpmn_local(c) == tag]


def _io_spec(info: Info) -> etree._Element | None:
    found = _children(info.elem, "ioSpecification")
    return found[0] if found else None


def _collection(elem: etree._Element | None) -> bool:
    return elem is not None and (elem.get("isCollection") or "false").strip() == "true"


class _Items:
    """Item definitions and the comparisons the rules need."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def definition(self, ident: str | None) -> etree._Element | None:
        info = self.ctx.index.by_id.get(_ref(ident)) if ident else None
        return info.elem if info is not None and info.tag == "itemDefinition" else None

    def same(self, left: str | None, right: str | None) -> bool:
        left, right = _ref(left), _ref(right)
        if left == right:
            return True
        a, b = self.definition(left), self.definition(right)
        if a is None or b is None:
            return False
        structure_a, structure_b = a.get("structureRef"), b.get("structureRef")
        return bool(structure_a) and structure_a == structure_b and _collection(a) == _collection(b)

    def of_message(self, ident: str | None) -> str | None:
        info = self.ctx.index.by_id.get(_ref(ident)) if ident else None
        return info.get("itemRef") if info is not None and info.tag == "message" else None


def check_collections(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for info in ctx.index.tagged("dataInput", "dataOutput", "dataObject"):
        item = items.definition(info.get("itemSubjectRef"))
        if item is not None and _collection(item) != _collection(info.elem):
            yield info.problem(
                f"{label(info)} has isCollection={str(_collection(info.elem)).lower()}, but its item "
                f"definition '{item.get('id')}' says {str(_collection(item)).lower()}."
            )


def _ids(elems: list[etree._Element]) -> list[str]:
    return [e.get("id") or "" for e in elems]


def _items_of(spec: etree._Element, tag: str) -> list[str]:
    return [e.get("itemSubjectRef") or "" for e in _children(spec, tag)]


def check_task_messages(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for info in ctx.index.tagged("serviceTask", "sendTask", "receiveTask"):
        spec = _io_spec(info)
        in_sets = _children(spec, "inputSet") if spec is not None else []
        out_sets = _children(spec, "outputSet") if spec is not None else []
        inputs = _items_of(spec, "dataInput") if spec is not None else []
        outputs = _items_of(spec, "dataOutput") if spec is not None else []
        if info.tag == "serviceTask" and info.get("operationRef"):
            operation = ctx.index.by_id.get(_ref(info.get("operationRef")))
            if len(in_sets) != 1:
                yield info.problem(
                    f"{label(info)} calls an operation, so its ioSpecification needs exactly one "
                    f"inputSet (it has {len(in_sets)})."
                )
            if len(out_sets) > 1:
                yield info.problem(
                    f"{label(info)} calls an operation, so its ioSpecification may have at most one "
                    f"outputSet (it has {len(out_sets)})."
                )
            if operation is None or operation.tag != "operation":
                continue
            in_msg = [(c.text or "") for c in _children(operation.elem, "inMessageRef")]
            out_msg = [(c.text or "") for c in _children(operation.elem, "outMessageRef")]
            if in_msg:
                wanted = items.of_message(in_msg[0])
                for item in inputs:
                    if not items.same(item, wanted):
                        yield info.problem(
                            f"{label(info)} has a data input of item '{item}', but operation "
                            f"'{operation.ident}' takes messages of item '{wanted}'."
                        )
            if out_msg:
                wanted = items.of_message(out_msg[0])
                for item in outputs:
                    if not items.same(item, wanted):
                        yield info.problem(
                            f"{label(info)} has a data output of item '{item}', but operation "
                            f"'{operation.ident}' answers with item '{wanted}'."
                        )
        elif info.tag in ("sendTask", "receiveTask") and info.get("messageRef"):
            sets, data, word = (
                (in_sets, inputs, "input") if info.tag == "sendTask" else (out_sets, outputs, "output")
            )
            if len(sets) > 1:
                yield info.problem(f"{label(info)} handles a message, so it may have at most one {word}Set.")
            if len(data) > 1:
                yield info.problem(
                    f"{label(info)} handles a message, so it may have at most one data {word}."
                )
            wanted = items.of_message(info.get("messageRef"))
            for item in data:
                if wanted is not None and not items.same(item, wanted):
                    yield info.problem(
                        f"{label(info)} has a data {word} of item '{item}', but its message "
                        f"carries item '{wanted}'."
                    )


def _callee_spec(ctx: Context, info: Info) -> tuple[Info | None, etree._Element | None]:
    callee = ctx.index.by_id.get(_ref(info.get("calledElement")))
    if callee is None:
        return None, None
    return callee, _io_spec(callee)


def check_call_io(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for info in ctx.index.tagged("callActivity"):
        callee, callee_spec = _callee_spec(ctx, info)
        spec = _io_spec(info)
        if callee is None or (spec is None and callee_spec is None):
            continue
        for tag, word in (("dataInput", "inputs"), ("dataOutput", "outputs")):
            mine = _items_of(spec, tag) if spec is not None else []
            theirs = _items_of(callee_spec, tag) if callee_spec is not None else []
            unmatched = list(theirs)
            ok = len(mine) == len(theirs)
            for item in mine:
                match = next((t for t in unmatched if items.same(item, t)), None)
                if match is None:
                    ok = False
                    break
                unmatched.remove(match)
            if not ok:
                yield info.problem(
                    f"{label(info)} declares data {word} that do not match those of "
                    f"{label(callee, capital=False)} it calls."
                )
        for text in (spec, callee_spec):
            for io_set in (
                (_children(text, "inputSet") + _children(text, "outputSet")) if text is not None else []
            ):
                if (io_set.text or "").strip():
                    yield info.problem(
                        f"{label(info)} has text inside an {bpmn_local(io_set)}, where only "
                        "references belong."
                    )


def check_io_bindings(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for info in ctx.index.tagged("ioBinding"):
        operation = ctx.index.by_id.get(_ref(info.get("operationRef")))
        if operation is None or operation.tag != "operation":
            continue
        for attr, msg_tag in (("inputDataRef", "inMessageRef"), ("outputDataRef", "outMessageRef")):
            data = ctx.index.by_id.get(_ref(info.get(attr)))
            messages = _children(operation.elem, msg_tag)
            if data is None or not messages:
                continue
            wanted = items.of_message(messages[0].text)
            if not items.same(data.get("itemSubjectRef"), wanted):
                owner = ctx.index.by_id.get(info.process or "") or info
                yield owner.problem(
                    f"{label(owner)} binds {label(data, capital=False)} to operation '{operation.ident}', "
                    "but their item definitions differ."
                )


def check_loop_data(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for loop in ctx.index.tagged("multiInstanceLoopCharacteristics"):
        parent = loop.elem.getparent()
        owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        where = owner or loop
        for ref_tag, item_tag in (
            ("loopDataInputRef", "inputDataItem"),
            ("loopDataOutputRef", "outputDataItem"),
        ):
            refs = _children(loop.elem, ref_tag)
            data_items = _children(loop.elem, item_tag)
            if not refs or not data_items:
                continue
            target = ctx.index.by_id.get(_ref(refs[0].text))
            if target is None:
                continue
            collection = items.definition(target.get("itemSubjectRef"))
            element = items.definition(data_items[0].get("itemSubjectRef"))
            if collection is None or element is None:
                continue
            if _collection(element) or element.get("structureRef") != collection.get("structureRef"):
                yield where.problem(
                    f"{label(where)} iterates over '{target.ident}', but its {item_tag} is not a "
                    "single element of that collection's type."
                )


def check_io_sets(ctx: Context) -> Iterator[ValidationProblem]:
    for spec_info in ctx.index.tagged("ioSpecification"):
        spec = spec_info.elem
        parent = spec.getparent()
        owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        where = owner or spec_info
        in_sets, out_sets = _children(spec, "inputSet"), _children(spec, "outputSet")
        yield from _set_members(where, spec, in_sets, "dataInput", "Input")
        yield from _set_members(where, spec, out_sets, "dataOutput", "Output")
        ins = {s.get("id"): s for s in in_sets if s.get("id")}
        outs = {s.get("id"): s for s in out_sets if s.get("id")}
        for sets, others, ref_tag, back_tag in (
            (ins, outs, "outputSetRefs", "inputSetRefs"),
            (outs, ins, "inputSetRefs", "outputSetRefs"),
        ):
            for ident, io_set in sets.items():
                for ref in _children(io_set, ref_tag):
                    other = others.get(_ref(ref.text))
                    if other is not None and ident not in {_ref(b.text) for b in _children(other, back_tag)}:
                        yield where.problem(
                            f"{label(where)}: set '{ident}' refers to set '{other.get('id')}', "
                            "which does not refer back to it."
                        )


def _set_members(
    where: Info, spec: etree._Element, sets: list[etree._Element], data_tag: str, word: str
) -> Iterator[ValidationProblem]:
    listed: set[str] = set()
    for io_set in sets:
        members = {_ref(r.text) for r in _children(io_set, f"data{word}Refs")}
        listed |= members
        for extra in (f"optional{word}Refs", f"whileExecuting{word}Refs"):
            for ref in _children(io_set, extra):
                if _ref(ref.text) not in members:
                    yield where.problem(
                        f"{label(where)} lists '{_ref(ref.text)}' as {extra} of a set that does "
                        f"not contain it in data{word}Refs."
                    )
    for data in _ids(_children(spec, data_tag)):
        if data and data not in listed:
            yield where.problem(
                f"{label(where)} declares data {word.lower()} '{data}', which no "
                f"{word.lower()}Set references."
            )


_EVENT_ITEM_ATTR = {
    "messageEventDefinition": ("messageRef", "itemRef"),
    "errorEventDefinition": ("errorRef", "structureRef"),
    "escalationEventDefinition": ("escalationRef", "structureRef"),
    "signalEventDefinition": ("signalRef", "structureRef"),
}


def check_event_data(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for info in ctx.index.tagged(
        "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"
    ):
        throw = info.tag in ("endEvent", "intermediateThrowEvent")
        data = _children(info.elem, "dataInput" if throw else "dataOutput")
        if not data:
            continue
        defs = [c for c in info.elem if (bpmn_local(c) or "").endswith("EventDefinition")]
        if len(data) != len(defs):
            word = "data input" if throw else "data output"
            yield info.problem(
                f"{label(info)} has {len(defs)} event definition(s) but {len(data)} {word}(s); "
                "each event definition needs its own."
            )
            continue
        for datum, definition in zip(data, defs, strict=True):
            attrs = _EVENT_ITEM_ATTR.get(bpmn_local(definition) or "")
            if attrs is None:
                continue
            target = ctx.index.by_id.get(_ref(definition.get(attrs[0])))
            if target is None:
                continue
            if not items.same(datum.get("itemSubjectRef"), target.get(attrs[1])):
                yield info.problem(
                    f"{label(info)} carries data of item '{datum.get('itemSubjectRef')}', but its "
                    f"{bpmn_local(definition)} uses item '{target.get(attrs[1])}'."
                )


def check_definition_refs(ctx: Context) -> Iterator[ValidationProblem]:
    """`eventDefinitionRef` may only name a definition declared at the document level."""
    for info in ctx.index.tagged("eventDefinitionRef"):
        target = ctx.index.by_id.get(_ref(info.elem.text))
        if target is None or not target.tag.endswith("EventDefinition") or target.parent_tag == "definitions":
            continue
        parent = info.elem.getparent()
        owner = ctx.index.by_id.get(parent.get("id") or "") if parent is not None else None
        where = owner or info
        yield where.problem(
            f"{label(where)} reuses event definition '{target.ident}', which belongs to another "
            "event; only definitions declared at the document level can be shared."
        )


def check_data_states(ctx: Context) -> Iterator[ValidationProblem]:
    for info in ctx.index.tagged("dataObjectReference"):
        states = _children(info.elem, "dataState")
        name = info.get("name")
        if not states or name is None:
            continue
        target = ctx.index.by_id.get(_ref(info.get("dataObjectRef")))
        state = states[0].get("name") or ""
        if target is None:
            continue
        expected = f"{target.get('name') or ''} [{state}]"
        if name != expected:
            yield info.problem(
                f"{label(info)} is named '{name}'; with state '{state}' it should be named '{expected}'."
            )


def check_data_associations(ctx: Context) -> Iterator[ValidationProblem]:
    items = _Items(ctx)
    for info in ctx.index.tagged("dataInputAssociation", "dataOutputAssociation"):
        sources = [ctx.index.by_id.get(_ref(c.text)) for c in _children(info.elem, "sourceRef")]
        targets = [ctx.index.by_id.get(_ref(c.text)) for c in _children(info.elem, "targetRef")]
        transformed = bool(_children(info.elem, "transformation")) or bool(_children(info.elem, "assignment"))
        if info.tag == "dataOutputAssociation":
            for target in targets:
                if target is not None and target.tag == "dataInput":
                    yield info.problem(
                        f"{label(info)} writes into {label(target, capital=False)}; a data input "
                        "can only be read."
                    )
        else:
            for source in sources:
                if source is not None and source.tag == "dataOutput" and source.container == info.container:
                    yield info.problem(
                        f"{label(info)} reads from {label(source, capital=False)}; a data "
                        "output of the same level can only be written."
                    )
        if transformed:
            continue
        if len(sources) > 1:
            yield info.problem(f"{label(info)} has several sources but no transformation to combine them.")
        elif sources and targets and sources[0] is not None and targets[0] is not None:
            source_item = _item_of(ctx, sources[0])
            target_item = _item_of(ctx, targets[0])
            if source_item and target_item and not items.same(source_item, target_item):
                yield info.problem(
                    f"{label(info)} connects items '{source_item}' and '{target_item}', which "
                    "differ, without a transformation."
                )


def _item_of(ctx: Context, info: Info) -> str | None:
    if info.tag == "dataObjectReference":
        target = ctx.index.by_id.get(_ref(info.get("dataObjectRef")))
        return target.get("itemSubjectRef") if target is not None else info.get("itemSubjectRef")
    return info.get("itemSubjectRef")


def check_interface_bindings(ctx: Context) -> Iterator[ValidationProblem]:
    """A callable element that offers an interface binds its data to each of the operations."""
    for info in ctx.index.tagged(
        "process",
        "globalTask",
        "globalUserTask",
        "globalScriptTask",
        "globalManualTask",
        "globalBusinessRuleTask",
    ):
        bound = {_ref(b.get("operationRef")) for b in _children(info.elem, "ioBinding")}
        for ref in _children(info.elem, "supportedInterfaceRef"):
            interface = ctx.index.by_id.get(_ref(ref.text))
            if interface is None or interface.tag != "interface":
                continue
            for operation in _children(interface.elem, "operation"):
                ident = operation.get("id") or ""
                if ident not in bound:
                    yield info.problem(
                        f"{label(info)} supports interface '{interface.ident}' but has no ioBinding "
                        f"for its operation '{ident}'."
                    )


DATA_CHECKS: tuple[Check, ...] = (
    check_interface_bindings,
    check_data_associations,
    check_collections,
    check_task_messages,
    check_call_io,
    check_io_bindings,
    check_loop_data,
    check_io_sets,
    check_event_data,
    check_definition_refs,
    check_data_states,
)
