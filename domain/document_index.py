"""One pass over a BPMN tree that records every BPMN element with an id and its context.

Validation needs more than the engine's model (artifacts, message flows, collaborations,
data associations...), but must stay fast: it reads this index instead of searching the tree.
Diagram interchange and vendor extension content are not entered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from domain.builders import bpmn_local, line_of
from domain.errors import ValidationProblem

# Tags whose content is never BPMN semantics and is not walked.
_SKIPPED = frozenset({"extensionElements", "documentation"})


@dataclass(slots=True)
class Info:
    """A BPMN element with its location in the document."""

    elem: etree._Element
    tag: str  # BPMN local name
    line: int
    ident: str | None
    process: str | None  # id of the enclosing process, None outside processes
    container: str | None  # id of the enclosing process or (ad-hoc/transaction) subprocess
    parent_tag: str | None

    def problem(self, message: str) -> ValidationProblem:
        return ValidationProblem(message, element_id=self.ident, tag=self.tag, line=self.line)

    def get(self, attr: str) -> str | None:
        return self.elem.get(attr)


@dataclass(slots=True)
class DocIndex:
    root: etree._Element
    by_id: dict[str, Info] = field(default_factory=dict)
    duplicates: list[Info] = field(default_factory=list)
    # every BPMN element in document order, grouped by local tag
    by_tag: dict[str, list[Info]] = field(default_factory=dict)

    def tagged(self, *tags: str) -> list[Info]:
        if len(tags) == 1:
            return self.by_tag.get(tags[0], [])
        found = [info for tag in tags for info in self.by_tag.get(tag, [])]
        found.sort(key=lambda info: info.line)
        return found

    def kind_of(self, ident: str | None) -> str | None:
        info = self.by_id.get(ident) if ident else None
        return info.tag if info else None


_CONTAINERS = frozenset({"process", "subProcess", "transaction", "adHocSubProcess"})


def build_index(root: etree._Element) -> DocIndex:
    index = DocIndex(root)
    _visit(index, root, None, None, None)
    return index


def _visit(
    index: DocIndex,
    elem: etree._Element,
    process: str | None,
    container: str | None,
    parent_tag: str | None,
) -> None:
    tag = bpmn_local(elem)
    if tag is None:
        return
    ident = elem.get("id")
    info = Info(elem, tag, line_of(elem), ident, process, container, parent_tag)
    index.by_tag.setdefault(tag, []).append(info)
    if ident:
        if ident in index.by_id:
            index.duplicates.append(info)
        else:
            index.by_id[ident] = info
    if tag in _SKIPPED:
        return
    if tag == "process":
        process = ident
    if tag in _CONTAINERS:
        container = ident
    for child in elem:
        _visit(index, child, process, container, tag)
