"""Small builders for engine tests: BPMN text from one-line element helpers, ids, a fixed clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from domain import engine
from domain.model import Definition
from domain.parser import parse_definition
from domain.state import InstanceState, Token, TokenState
from domain.transition import Transition

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="defs" targetNamespace="http://flowcore.test">\n'
)


class Ids:
    """Deterministic ids: id-1, id-2, ..."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def new_id(self) -> str:
        return f"id-{next(self._next)}"


def _props(props: dict[str, str] | None) -> str:
    if not props:
        return ""
    items = "".join(f'<camunda:property name="{escape(k)}" value="{escape(v)}"/>' for k, v in props.items())
    return f"<extensionElements><camunda:properties>{items}</camunda:properties></extensionElements>"


def _attrs(**attrs: Any) -> str:
    return "".join(f' {k.rstrip("_")}="{escape(str(v))}"' for k, v in attrs.items() if v is not None)


def start(ident: str = "start", props: dict[str, str] | None = None, name: str | None = None) -> str:
    return f"<startEvent{_attrs(id=ident, name=name)}>{_props(props)}</startEvent>"


def end(ident: str = "end", kind: str | None = None, error_ref: str | None = None) -> str:
    body = ""
    if kind == "terminate":
        body = "<terminateEventDefinition/>"
    elif kind == "error":
        body = f"<errorEventDefinition{_attrs(errorRef=error_ref)}/>"
    return f"<endEvent{_attrs(id=ident)}>{body}</endEvent>"


def script(
    ident: str, code: str = "", props: dict[str, str] | None = None, name: str | None = None, **attrs: Any
) -> str:
    return (
        f"<scriptTask{_attrs(id=ident, name=name, scriptFormat='javascript', **attrs)}>{_props(props)}"
        f"<script>{escape(code)}</script></scriptTask>"
    )


def task(ident: str, name: str | None = None, **attrs: Any) -> str:
    return f"<task{_attrs(id=ident, name=name, **attrs)}/>"


def user(ident: str, props: dict[str, str] | None = None, name: str | None = None, **attrs: Any) -> str:
    return f"<userTask{_attrs(id=ident, name=name, **attrs)}>{_props(props)}</userTask>"


def service(ident: str, props: dict[str, str] | None = None, name: str | None = None) -> str:
    return f"<serviceTask{_attrs(id=ident, name=name)}>{_props(props)}</serviceTask>"


def gateway(kind: str, ident: str, default: str | None = None, name: str | None = None) -> str:
    return f"<{kind}Gateway{_attrs(id=ident, name=name, default=default)}/>"


def flow(ident: str, source: str, target: str, condition: str | None = None) -> str:
    if condition is None:
        return f'<sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}"/>'
    return (
        f'<sequenceFlow id="{ident}" sourceRef="{source}" targetRef="{target}">'
        f"<conditionExpression>{escape(condition)}</conditionExpression></sequenceFlow>"
    )


def chain(*ids: str, prefix: str = "f") -> list[str]:
    """Unconditional flows a -> b -> c ..., named f_a_b."""
    return [flow(f"{prefix}_{a}_{b}", a, b) for a, b in itertools.pairwise(ids)]


def _flat(body: tuple[str | list[str], ...]) -> str:
    out: list[str] = []
    for item in body:
        out.extend(item if isinstance(item, list) else [item])
    return "".join(out)


def subprocess(ident: str, *body: str | list[str], name: str | None = None) -> str:
    return f"<subProcess{_attrs(id=ident, name=name)}>{_flat(body)}</subProcess>"


def call(ident: str, called: str, name: str | None = None) -> str:
    return f"<callActivity{_attrs(id=ident, name=name, calledElement=called)}/>"


def error_boundary(ident: str, attached: str, error_ref: str | None = None) -> str:
    return (
        f'<boundaryEvent id="{ident}" attachedToRef="{attached}">'
        f"<errorEventDefinition{_attrs(errorRef=error_ref)}/></boundaryEvent>"
    )


def error(ident: str, code: str) -> str:
    return f'<error id="{ident}" errorCode="{code}"/>'


def process(*body: str | list[str], ident: str = "P", name: str = "Test process") -> str:
    return f'<process id="{ident}" name="{name}" isExecutable="true">{_flat(body)}</process>'


def document(*parts: str) -> Definition:
    return parse_definition(_HEAD + "\n".join(parts) + "\n</definitions>")


def model(*body: str | list[str]) -> Definition:
    return document(process(*body))


def begin(definition: Definition, variables: dict[str, Any] | None = None, **kwargs: Any) -> Transition:
    return engine.start(
        definition, instance_guid="inst-1", variables=variables or {}, now=NOW, ids=Ids(), **kwargs
    )


def token_at(state: InstanceState, node_id: str, *, alive: bool = True) -> Token:
    for token in state.tokens:
        if token.current_node_id == node_id and (not alive or token.state is TokenState.ACTIVE):
            return token
    raise AssertionError(
        f"no token at {node_id}: {[(t.id, t.current_node_id, t.state) for t in state.tokens]}"
    )


def events_of(transition: Transition, event_type: str) -> list[Any]:
    return [e for e in transition.events if e.event_type == event_type]
