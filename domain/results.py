"""Variable mapping around a task: what it sees (InputMapping) and where its result goes.

Both mappings are JSON objects `{"name": "path"}`; a path is dotted (`customer.address.city`,
list positions as numbers). Result rules (SEMANTICS.md "Variables"): `ResultVariable` stores the
whole result, `OutputMapping` copies fields out of it, both may apply; with neither, the result
goes to the default variable of the task's kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.graph_index import GraphIndex
from domain.model import Node

DEFAULT_SCRIPT = "lastScriptResult"
DEFAULT_SERVICE = "lastServiceResult"
DEFAULT_USER_TASK = "lastUserTaskResult"
DEFAULT_SIGNAL = "lastSignalData"
DEFAULT_SUBPROCESS = "lastSubprocessResult"
LAST_ERROR = "_lastError"


class MappingProblem(ValueError):
    """A mapping property that is not a JSON object of strings."""


def read_path(value: Any, path: str) -> Any:
    """Follow a dotted path into nested objects and lists; None where it leads nowhere."""
    current = value
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            position = int(part)
            current = current[position] if -len(current) <= position < len(current) else None
        else:
            return None
    return current


def _mapping(index: GraphIndex, node: Node, name: str) -> dict[str, str] | None:
    try:
        value = index.json_prop(node, name)
    except ValueError as exc:
        raise MappingProblem(f"{name} of '{node.id}' is not valid JSON: {exc}") from exc
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MappingProblem(f"{name} of '{node.id}' must be a JSON object of variable paths.")
    return value


def input_view(index: GraphIndex, node: Node, variables: dict[str, Any]) -> dict[str, Any]:
    """The variables a task sees: the instance's, overlaid with its InputMapping (if any)."""
    if not node.properties:  # most tasks carry no extension properties at all
        return variables
    mapping = _mapping(index, node, "InputMapping")
    if not mapping:
        return variables
    view = dict(variables)
    for target, source in mapping.items():
        view[target] = read_path(variables, source)
    return view


def result_changes(index: GraphIndex, node: Node, result: Any, default_name: str) -> dict[str, Any]:
    """The variables a task's result sets; nothing when there is no result and no explicit mapping."""
    if not node.properties:
        return {default_name: result} if result is not None else {}
    changes: dict[str, Any] = {}
    target = node.prop("ResultVariable")
    mapping = _mapping(index, node, "OutputMapping")
    if target:
        changes[target.strip()] = result
    if mapping:
        for name, source in mapping.items():
            changes[name] = read_path(result, source)
    if not target and not mapping and result is not None:
        changes[default_name] = result
    return changes


def written_by_script(seen: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The variables a script assigned: new names, or names whose value changed."""
    missing = object()
    written: dict[str, Any] = {}
    for name, value in after.items():
        old = seen.get(name, missing)
        # type() as well: True == 1 in Python, but a script turning 1 into true did write
        if old is missing or type(old) is not type(value) or old != value:
            written[name] = value
    return written
