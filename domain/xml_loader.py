"""Turns untrusted BPMN text into an lxml tree, refusing anything that could reach outside.

Deployed documents come from users, so the parser never loads a DTD, never expands entities,
never touches the network and keeps libxml2's size limits. A document that declares a DOCTYPE
at all is refused: BPMN has no use for one, and refusing it closes every entity trick at once.
"""

from __future__ import annotations

import re

from lxml import etree

from domain.errors import InvalidDefinition, ValidationProblem

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"

# A str may still carry `<?xml ... encoding="..."?>`; we hand lxml UTF-8 bytes instead, so the
# declared encoding must not be believed.
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
# A DOCTYPE in the prolog (after the declaration, comments and PIs). Checked before parsing so
# that entity tricks are refused with that reason rather than whatever libxml2 trips on first.
_PROLOG_DOCTYPE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.DOTALL)
_DOCTYPE_MESSAGE = "The BPMN document declares a DOCTYPE; DOCTYPEs and entities are not allowed."


def _make_parser(from_text: bool) -> etree.XMLParser:
    # A fresh parser per call: lxml parsers keep per-parse state and are not shared across threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        encoding="utf-8" if from_text else None,
    )


def _line(elem: etree._Element) -> int | None:
    line = elem.sourceline
    return line if isinstance(line, int) else None


def _refuse(message: str, line: int | None, tag: str | None = None) -> InvalidDefinition:
    problem = ValidationProblem(message, tag=tag, line=line)
    where = f" (line {line})" if line else ""
    return InvalidDefinition(f"{message}{where}", [problem])


def load_xml(xml: str | bytes) -> etree._Element:
    """Parse `xml` and return its root element, or raise `InvalidDefinition` with the line."""
    from_text = isinstance(xml, str)
    data = _XML_DECL.sub("", xml, count=1).encode("utf-8") if isinstance(xml, str) else bytes(xml)
    if not data.strip():
        raise _refuse("The BPMN document is empty.", 1)
    if _PROLOG_DOCTYPE.match(data):
        raise _refuse(_DOCTYPE_MESSAGE, 1)
    try:
        root = etree.fromstring(data, _make_parser(from_text))
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise _refuse(f"The BPMN document is not well-formed XML: {exc.msg}", line) from None
    except ValueError as exc:  # e.g. bytes that cannot be decoded at all
        raise _refuse(f"The BPMN document cannot be read as XML: {exc}", 1) from None
    if root is None:
        raise _refuse("The BPMN document has no root element.", 1)
    docinfo: etree.DocInfo = root.getroottree().docinfo
    # `doctype` is missing from the type stubs but present at run time
    doctype: str = getattr(docinfo, "doctype", "")
    if doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _refuse(_DOCTYPE_MESSAGE, 1)
    _refuse_entity_references(root)
    return root


def _refuse_entity_references(root: etree._Element) -> None:
    # Without a DOCTYPE no entity can be declared, but an undeclared reference left in the tree
    # would otherwise reach the model as text; refuse it for a clear message.
    for node in root.iter(etree.Entity):
        raise _refuse(
            f"The BPMN document uses the entity reference {node.text}; entities are not allowed.",
            _line(node),
        )


def check_bpmn_root(root: etree._Element) -> None:
    """Refuse a well-formed document whose root is not BPMN 2.0 `definitions`."""
    qname = etree.QName(root)
    if qname.namespace != BPMN_NS or qname.localname != "definitions":
        got = f"{{{qname.namespace}}}{qname.localname}" if qname.namespace else qname.localname
        raise _refuse(
            f"The document's root element is '{got}', not BPMN 2.0 'definitions' in namespace {BPMN_NS}.",
            _line(root),
            tag=qname.localname,
        )
