"""The `CallService` effect of a service task, built from its extension properties.

Endpoint (rendered with `${...}`), Method (POST), Headers (JSON object, values rendered),
PayloadTemplate (JSON; a string that is exactly `${expr}` keeps the expression's JSON type,
other strings are rendered as text; default: every variable the task sees), TimeoutMs (30000),
Retries (3), RetryBackoff (1000 ms), ConnectorKey, BpmnErrorField.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from domain import scripting
from domain.graph_index import GraphIndex
from domain.model import Node
from domain.results import MappingProblem, input_view
from domain.transition import CallService

_WHOLE_EXPRESSION = re.compile(r"\$\{(.*)\}", re.DOTALL)


def _render(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _WHOLE_EXPRESSION.fullmatch(value.strip())
        if whole is not None and "${" not in whole.group(1):
            return scripting.evaluate_expression(whole.group(1), variables)
        return scripting.render_template(value, variables) if "${" in value else value
    if isinstance(value, dict):
        return {k: _render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, variables) for v in value]
    return value


def _number(node: Node, name: str, default: int) -> int:
    raw = node.prop(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise MappingProblem(f"{name} of '{node.id}' must be a whole number, not {raw!r}.") from None
    if value < 0:
        raise MappingProblem(f"{name} of '{node.id}' must not be negative.")
    return value


def _json(index: GraphIndex, node: Node, name: str) -> Any:
    try:
        return index.json_prop(node, name)
    except ValueError as exc:
        raise MappingProblem(f"{name} of '{node.id}' is not valid JSON: {exc}") from exc


def build_call(
    index: GraphIndex, node: Node, variables: dict[str, Any], token_id: int, attempt_group: int
) -> CallService:
    """Raises ScriptError (a template failed) or MappingProblem (a property is malformed)."""
    seen = input_view(index, node, variables)
    endpoint_text = node.prop("Endpoint")
    connector = node.prop("ConnectorKey")
    if not (endpoint_text and endpoint_text.strip()) and not connector:
        raise MappingProblem(f"'{node.id}' has neither an Endpoint nor a ConnectorKey property.")
    endpoint = scripting.render_template(endpoint_text.strip(), seen) if endpoint_text else None
    headers_spec = _json(index, node, "Headers")
    if headers_spec is not None and not isinstance(headers_spec, dict):
        raise MappingProblem(f"Headers of '{node.id}' must be a JSON object.")
    headers = {str(k): str(_render(v, seen)) for k, v in (headers_spec or {}).items()}
    template = _json(index, node, "PayloadTemplate")
    payload = _render(template, seen) if template is not None else dict(seen)
    return CallService(
        token_id=token_id,
        node_id=node.id,
        endpoint=endpoint,
        connector_key=connector,
        method=(node.prop("Method") or "POST").strip().upper(),
        headers=headers,
        payload=payload,
        timeout_ms=_number(node, "TimeoutMs", 30000),
        retries=_number(node, "Retries", 3),
        retry_backoff_ms=_number(node, "RetryBackoff", 1000),
        attempt_group=attempt_group,
        bpmn_error_field=node.prop("BpmnErrorField"),
    )

def shown_url(url: str) -> str:
    """The URL fit for logs and error messages: no credentials, no query, no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def shown_target(call: CallService) -> str:
    """What a call is shown as in state, history and messages: secrets in a URL stay out of them."""
    return shown_url(call.endpoint) if call.endpoint else (call.connector_key or "")
