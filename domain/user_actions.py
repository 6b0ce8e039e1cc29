"""A user task's `UserActions` property: the actions a signal may choose from.

Accepted forms: a JSON array of names (`["approve", "reject"]`) or of `{action, label}`
objects, or a plain comma-separated list of names.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.graph_index import GraphIndex
from domain.model import Node, NodeKind


@dataclass(frozen=True, slots=True)
class UserAction:
    action: str
    label: str


def _label(name: str) -> str:
    return name[:1].upper() + name[1:]


def user_actions(index: GraphIndex, node: Node) -> list[UserAction]:
    if node.kind is not NodeKind.USER_TASK:
        return []
    raw = node.prop("UserActions")
    if raw is None or not raw.strip():
        return []
    try:
        value = index.json_prop(node, "UserActions")
    except ValueError:
        value = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(value, list):
        return []
    found: list[UserAction] = []
    for item in value:
        if isinstance(item, str) and item:
            found.append(UserAction(item, _label(item)))
        elif isinstance(item, dict) and isinstance(item.get("action"), str) and item["action"]:
            name = item["action"]
            label = item.get("label")
            found.append(UserAction(name, label if isinstance(label, str) and label else _label(name)))
    return found
