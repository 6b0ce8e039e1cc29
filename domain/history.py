"""The audit events one command writes, numbered from the instance's last sequence number."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.model import Node, NodeKind
from domain.state import HistoryEvent, InstanceState, Token

_NODE_TYPES = {kind: kind.value[:1].upper() + kind.value[1:] for kind in NodeKind}


def node_type(kind: NodeKind) -> str:
    """The display form clients know: `userTask` -> `UserTask`."""
    return _NODE_TYPES[kind]


class History:
    __slots__ = ("events", "now", "state")

    def __init__(self, state: InstanceState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.events: list[HistoryEvent] = []

    def add(
        self,
        event_type: str,
        *,
        node: Node | None = None,
        token: Token | None = None,
        actor: str | None = None,
        comment: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.state.history_seq += 1
        self.events.append(
            HistoryEvent(
                seq=self.state.history_seq,
                event_type=event_type,
                at=self.now,
                node_id=node.id if node is not None else None,
                node_name=node.name if node is not None else None,
                node_type=node_type(node.kind) if node is not None else None,
                token_id=token.id if token is not None else None,
                actor=actor,
                comment=comment,
                data=data,
            )
        )
