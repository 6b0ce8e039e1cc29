"""Routing: which outgoing flows a node takes, and when a join lets its tokens through.

Outgoing flows
  * exclusive gateway: conditions in document order, the first true one wins (a flow without
    condition counts as true), else the default flow, else a routing error;
  * inclusive gateway: every true flow, else the default flow, else a routing error;
  * parallel gateway: every flow, conditions ignored;
  * any other node: every unconditional flow, every conditional flow whose condition holds,
    and the default flow when no conditional flow holds.

Joins (a gateway with several incoming flows, or an activity whose startQuantity > 1)
  Tokens arriving at a join wait there (INACTIVE, blocked on "join") and are counted per
  incoming flow, among the tokens of the same scope instance only. The rule does not depend
  on where the tokens were split, so joins behind implicit splits or behind another gateway
  type work too:
  * parallel: fires when every incoming flow has a waiting token; one token per flow is used;
  * inclusive: fires when no other live token of the scope instance can still reach the
    gateway (reachability over the graph, boundary events included); one token per flow;
  * startQuantity n: fires when n tokens wait, whatever flow they came by.
  When it fires, the parent of the used tokens is reactivated at the join if they all are its
  children and none of its other children is still alive (the structured case: the parent
  split them); otherwise a fresh token continues, as a child of the last arriver's parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from domain import scripting
from domain.errors import ScriptError
from domain.model import Flow, Node, NodeKind
from domain.state import BlockedOn, NodeStatus, Token, TokenState
from domain.tokens import JOIN, block, is_alive, is_holder, is_pending_join, touch

if TYPE_CHECKING:
    from domain.runner import Run


class RoutingError(Exception):
    """No outgoing flow can be taken, or a condition could not be evaluated."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def label(node: Node) -> str:
    return f"'{node.id}' ({node.name})" if node.name and node.name != node.id else f"'{node.id}'"


def _holds(flow: Flow, variables: dict[str, Any]) -> bool:
    if flow.condition is None:
        return True
    try:
        return scripting.evaluate_condition(flow.condition, variables)
    except ScriptError as exc:
        raise RoutingError(f"Condition of sequence flow '{flow.id}' failed: {exc.message}") from exc


def exclusive_flows(node: Node, outgoing: Sequence[Flow], variables: dict[str, Any]) -> list[Flow]:
    default = None
    for flow in outgoing:
        if flow.id == node.default_flow:
            default = flow
        elif _holds(flow, variables):
            return [flow]
    if default is not None:
        return [default]
    raise RoutingError(
        f"Exclusive gateway {label(node)}: no outgoing condition is true and there is no default flow."
    )


def inclusive_flows(node: Node, outgoing: Sequence[Flow], variables: dict[str, Any]) -> list[Flow]:
    default = None
    taken: list[Flow] = []
    for flow in outgoing:
        if flow.id == node.default_flow:
            default = flow
        elif _holds(flow, variables):
            taken.append(flow)
    if taken:
        return taken
    if default is not None:
        return [default]
    raise RoutingError(
        f"Inclusive gateway {label(node)}: no outgoing condition is true and there is no default flow."
    )


def activity_flows(node: Node, outgoing: Sequence[Flow], variables: dict[str, Any]) -> list[Flow]:
    default = None
    taken: list[Flow] = []
    conditional_taken = False
    for flow in outgoing:
        if flow.id == node.default_flow:
            default = flow
        elif flow.condition is None:
            taken.append(flow)
        elif _holds(flow, variables):
            taken.append(flow)
            conditional_taken = True
    if default is not None and not conditional_taken:
        taken.append(default)
    if not taken and outgoing:
        raise RoutingError(
            f"No outgoing sequence flow of {label(node)} can be taken: "
            "every condition is false and there is no default flow."
        )
    return taken


class JoinRule(Enum):
    PARALLEL = "parallel"
    INCLUSIVE = "inclusive"
    QUANTITY = "quantity"


# Enum members looked up once: on Python 3.11 each `TokenState.X` is a slow class attribute
# access, and joins test them for every token of the instance.
_ACTIVE, _INACTIVE, _ON_HOLD = TokenState.ACTIVE, TokenState.INACTIVE, TokenState.ON_HOLD
_ARRIVED, _EXECUTED_COMPLETE = NodeStatus.ARRIVED, NodeStatus.EXECUTED_COMPLETE
_PARALLEL, _INCLUSIVE, _QUANTITY = JoinRule.PARALLEL, JoinRule.INCLUSIVE, JoinRule.QUANTITY
_INCLUSIVE_GATEWAY = NodeKind.INCLUSIVE_GATEWAY


def arrive(run: Run, token: Token, node: Node, rule: JoinRule) -> bool:
    """A token reaches a join. True: it passes on by itself; False: it waits or was merged."""
    holder = run.table.holder_of(token)
    candidates = [*_pending(run, node, token.process_key, holder), token]
    chosen = _select(run, node, rule, candidates, holder, arriving=token)
    if chosen is None:
        _wait(run, token, node, rule)
        return False
    if len(chosen) == 1 and chosen[0] is token:
        return True
    for used in chosen:
        if used is token:
            token.state = _INACTIVE
            _count_arrival(run, token)
        used.blocked_on = None
        used.status_current_node = _EXECUTED_COMPLETE
        touch(used, run.now)
    if not any(used is token for used in chosen):
        _wait(run, token, node, rule)
    _continue(run, node, chosen, last=token)
    return False


def settle_inclusive(run: Run) -> bool:
    """Fire inclusive joins whose missing branches can no longer arrive. True if one fired."""
    seen: set[tuple[str | None, str, int | None]] = set()
    for token in list(run.state.tokens):
        if not is_pending_join(token):
            continue
        node = run.node_of(token)
        if node.kind is not _INCLUSIVE_GATEWAY or len(node.incoming) < 2:
            continue
        holder = run.table.holder_of(token)
        key = (token.process_key, node.id, holder.id if holder is not None else None)
        if key in seen:
            continue
        seen.add(key)
        candidates = _pending(run, node, token.process_key, holder)
        chosen = _select(run, node, _INCLUSIVE, candidates, holder, arriving=None)
        if chosen:
            for used in chosen:
                used.blocked_on = None
                used.status_current_node = _EXECUTED_COMPLETE
                touch(used, run.now)
            _continue(run, node, chosen, last=chosen[-1])
            return True
    return False


def _pending(run: Run, node: Node, process_key: str | None, holder: Token | None) -> list[Token]:
    return [
        t
        for t in run.state.tokens
        if t.current_node_id == node.id
        and t.process_key == process_key
        and is_pending_join(t)
        and run.table.in_scope(t, holder)
    ]


def _per_flow(node: Node, candidates: list[Token]) -> list[Token]:
    chosen: list[Token] = []
    for flow_id in node.incoming:
        for token in candidates:
            if token.arrived_via == flow_id:
                chosen.append(token)
                break
    return chosen


def _select(
    run: Run,
    node: Node,
    rule: JoinRule,
    candidates: list[Token],
    holder: Token | None,
    arriving: Token | None,
) -> list[Token] | None:
    if rule is _QUANTITY:
        wanted = node.start_quantity
        return candidates[:wanted] if len(candidates) >= wanted else None
    if rule is _PARALLEL:
        chosen = _per_flow(node, candidates)
        return chosen if len(chosen) == len(node.incoming) else None
    if _others_can_reach(run, node, holder, candidates[0].process_key if candidates else None, arriving):
        return None
    return _per_flow(node, candidates) or None


def _others_can_reach(
    run: Run, node: Node, holder: Token | None, process_key: str | None, arriving: Token | None
) -> bool:
    reach = run.index_for(process_key).can_reach(node.id)
    table = run.table
    for t in run.state.tokens:
        if t is arriving or t.process_key != process_key or not is_alive(t):
            continue
        at_join = t.current_node_id == node.id
        if at_join and is_pending_join(t):
            continue
        if t.state is _ON_HOLD and not is_holder(t):
            continue  # a split parent: its children stand for it
        # a token standing at the join but not yet counted is about to arrive
        if (at_join or t.current_node_id in reach) and table.in_scope(t, holder):
            return True
    return False


def _count_arrival(run: Run, token: Token) -> None:
    parent = run.table.parent(token)
    if parent is not None and parent.state is _ON_HOLD and not is_holder(parent):
        parent.sync_node_tokens_finished += 1
        touch(parent, run.now)


def _wait(run: Run, token: Token, node: Node, rule: JoinRule) -> None:
    token.state = _INACTIVE
    if rule is _QUANTITY:
        text = f"Waiting at {label(node)} for {node.start_quantity} tokens"
    else:
        text = f"Waiting at {label(node)} for the other incoming branches"
    block(token, run.now, _ARRIVED, BlockedOn(kind=JOIN, task_id=node.id, description=text))
    _count_arrival(run, token)


def _continue(run: Run, node: Node, used: list[Token], last: Token) -> None:
    """Hand the merged flow to one token, which then runs the node's own behaviour."""
    table = run.table
    parent_ids = {t.parent_token_id for t in used}
    parent = table.parent(used[0]) if len(parent_ids) == 1 else None
    if (
        parent is not None
        and parent.state is _ON_HOLD
        and not is_holder(parent)
        and not table.has_alive_children(parent)
    ):
        parent.state = _ACTIVE
        run.resume_at(parent, node)
        return
    successor_parent = table.parent(last)
    successor = run.new_token(successor_parent, last.process_key)
    if (
        successor_parent is not None
        and successor_parent.state is _ON_HOLD
        and not is_holder(successor_parent)
    ):
        successor_parent.sync_node_tokens_count += 1
    run.resume_at(successor, node)
    for pid in parent_ids:
        other = table.by_id.get(pid) if pid is not None else None
        if other is not None and other is not successor_parent:
            run.check_parent(other)
