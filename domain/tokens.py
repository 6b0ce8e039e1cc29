"""Token bookkeeping: the table of an instance's tokens, their tree, and the small state changes.

Tokens form a tree through `parent_token_id`: split children hang under the token that split
(ON_HOLD at the split node), and the tokens running an embedded subprocess or called process
hang under the token that entered it (ON_HOLD, blocked on kind "subprocess": the scope
holder). A scope instance is therefore the subtree of its holder, and the tokens of the
process level are those without a holder above them.
"""

from __future__ import annotations

from datetime import datetime

from domain.model import Node
from domain.state import BlockedOn, NodeActionState, NodeStatus, Token, TokenState

# BlockedOn kinds
USER_TASK = "userTask"
JOB = "job"
MESSAGE = "message"
SIGNAL = "signal"
TIMER = "timer"
PAUSE = "supervisedPause"
JOIN = "join"
ERROR = "error"
SUBPROCESS = "subprocess"

# Waits a client ends with a signal (SignalProcessInstanceCommand).
SIGNALLED_WAITS = frozenset({USER_TASK, MESSAGE, SIGNAL})
# Waits `complete_task` may end when the token is named explicitly (worker, timer).
COMPLETABLE_WAITS = SIGNALLED_WAITS | {JOB, TIMER}


# Enum members looked up once: on Python 3.11 `TokenState.ACTIVE` is a slow class attribute
# access, and these checks run several times per step.
_ACTIVE, _INACTIVE, _ON_HOLD = TokenState.ACTIVE, TokenState.INACTIVE, TokenState.ON_HOLD
_ARRIVED, _EXECUTED_COMPLETE = NodeStatus.ARRIVED, NodeStatus.EXECUTED_COMPLETE


def touch(token: Token, now: datetime) -> None:
    token.version += 1
    token.date_updated = now


def kind_of(token: Token) -> str | None:
    blocked = token.blocked_on
    return blocked.kind if blocked is not None else None


def is_pending_join(token: Token) -> bool:
    return token.state is _INACTIVE and kind_of(token) == JOIN


def is_alive(token: Token) -> bool:
    """Still part of the run: active, holding children, or waiting at a join for its partners."""
    state = token.state
    return state is _ACTIVE or state is _ON_HOLD or is_pending_join(token)


def is_holder(token: Token) -> bool:
    return token.state is _ON_HOLD and kind_of(token) == SUBPROCESS


def is_runnable(token: Token) -> bool:
    return token.state is _ACTIVE and token.blocked_on is None


def arrive(token: Token, node: Node, flow_id: str | None, now: datetime) -> None:
    """Put the token on `node`: a new entry in its action states and its back sequence."""
    token.current_node_id = node.id
    token.current_node_name = node.name
    token.status_current_node = _ARRIVED
    token.arrived_via = flow_id
    token.scope = node.scope
    token.blocked_on = None
    token.nodes_action_states.append(NodeActionState(node_id=node.id, name=node.name, arrived_date=now))
    token.back_seq.append(node.id)
    touch(token, now)


def block(token: Token, now: datetime, status: NodeStatus, blocked: BlockedOn) -> None:
    token.status_current_node = status
    token.blocked_on = blocked
    touch(token, now)


def finish(token: Token, now: datetime, state: TokenState = TokenState.INACTIVE) -> None:
    """The token leaves the run (end event, consumed at a join, terminated, dismissed)."""
    token.state = state
    token.blocked_on = None
    if state is _INACTIVE:
        token.status_current_node = _EXECUTED_COMPLETE
    touch(token, now)


class TokenTable:
    """An index over `state.tokens` built once per command: by id and by parent."""

    __slots__ = ("by_id", "children", "tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.by_id: dict[int, Token] = {}
        self.children: dict[int, list[Token]] = {}
        for token in tokens:
            self._index(token)

    def _index(self, token: Token) -> None:
        self.by_id[token.id] = token
        if token.parent_token_id is not None:
            self.children.setdefault(token.parent_token_id, []).append(token)

    def add(self, token: Token) -> None:
        self.tokens.append(token)
        self._index(token)

    def parent(self, token: Token) -> Token | None:
        pid = token.parent_token_id
        return self.by_id.get(pid) if pid is not None else None

    def holder_of(self, token: Token) -> Token | None:
        """The token holding the scope instance `token` runs in; None at the instance's process level."""
        parent = self.parent(token)
        while parent is not None:
            if kind_of(parent) == SUBPROCESS:
                return parent
            parent = self.parent(parent)
        return None

    def has_alive_children(self, token: Token) -> bool:
        return any(is_alive(child) for child in self.children.get(token.id, ()))

    def alive_descendants(self, token: Token) -> list[Token]:
        found: list[Token] = []
        todo = [token]
        while todo:
            for child in self.children.get(todo.pop().id, ()):
                todo.append(child)
                if is_alive(child):
                    found.append(child)
        return found

    def in_scope(self, token: Token, holder: Token | None) -> bool:
        holder_id = holder.id if holder is not None else None
        found = self.holder_of(token)
        return (found.id if found is not None else None) == holder_id
