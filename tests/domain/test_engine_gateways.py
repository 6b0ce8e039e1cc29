"""Routing and joins: exclusive, parallel and inclusive gateways, implicit splits, merges, quantities."""

from __future__ import annotations

from domain import engine
from domain.model import Definition
from domain.state import InstanceStatus, NodeStatus, TokenState
from tests.domain.engine_support import (
    NOW,
    Ids,
    begin,
    chain,
    end,
    flow,
    gateway,
    model,
    script,
    start,
    token_at,
    user,
)


def _exclusive(default: bool = True) -> Definition:
    return model(
        start(),
        gateway("exclusive", "xor", default="f_d" if default else None, name="Route"),
        script("a", "via = 'a';"),
        script("b", "via = 'b';"),
        script("d", "via = 'd';"),
        end("e"),
        flow("f0", "start", "xor"),
        flow("f_a", "xor", "a", "amount > 100"),
        flow("f_b", "xor", "b", "amount > 10"),
        flow("f_d", "xor", "d", None if default else "amount < 0"),
        flow("fa", "a", "e"),
        flow("fb", "b", "e"),
        flow("fd", "d", "e"),
    )


def test_exclusive_gateway_takes_the_first_true_condition_in_document_order() -> None:
    definition = _exclusive()
    assert begin(definition, {"amount": 500}).state.variables["via"] == "a"  # both true: first wins
    assert begin(definition, {"amount": 50}).state.variables["via"] == "b"
    assert begin(definition, {"amount": 1}).state.variables["via"] == "d"


def test_exclusive_gateway_without_match_or_default_fails_naming_the_gateway() -> None:
    state = begin(_exclusive(default=False), {"amount": 1}).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert state.error.task_id == "xor"
    assert state.error.error_message == (
        "Exclusive gateway 'xor' (Route): no outgoing condition is true and there is no default flow."
    )
    token = token_at(state, "xor")
    assert token.blocked_on is not None and token.blocked_on.kind == "error"
    assert state.variables["_lastError"] == {"errorCode": None, "errorMessage": state.error.error_message}


def test_a_failing_condition_fails_the_instance_with_the_flow_named() -> None:
    state = begin(_exclusive(), {}).state  # `amount` is not defined
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert state.error.error_message.startswith("Condition of sequence flow 'f_a' failed:")


def _fork_join(branches: int = 3) -> Definition:
    parts: list[object] = [
        start(),
        gateway("parallel", "fork"),
        gateway("parallel", "join"),
        end(),
        flow("f0", "start", "fork"),
    ]
    for n in range(branches):
        parts += [
            script(f"s{n}", f"v{n} = {n};"),
            flow(f"a{n}", "fork", f"s{n}"),
            flow(f"b{n}", f"s{n}", "join"),
        ]
    parts.append(flow("f9", "join", "end"))
    return model(*parts)


def test_parallel_split_and_join_token_fields() -> None:
    state = begin(_fork_join(3)).state
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables == {"v0": 0, "v1": 1, "v2": 2}
    parent, *children = state.tokens
    assert parent.parent_token_id is None
    assert [c.parent_token_id for c in children] == [parent.id] * 3
    assert parent.sync_node_tokens_count == 3
    assert parent.sync_node_tokens_finished == 3
    assert all(c.state is TokenState.INACTIVE and c.current_node_id == "join" for c in children)
    assert all(c.status_current_node is NodeStatus.EXECUTED_COMPLETE for c in children)
    assert parent.back_seq == ["start", "fork", "join", "end"]
    assert parent.state is TokenState.INACTIVE
    assert sorted(state.completed_tasks) == sorted(["start", "s0", "s1", "s2"])


def test_parallel_parent_is_on_hold_while_a_branch_waits() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        user("u"),
        script("s", "done = true;"),
        gateway("parallel", "join"),
        end(),
        chain("start", "fork"),
        chain("fork", "u", "join", prefix="p"),
        chain("fork", "s", "join", prefix="q"),
        chain("join", "end", prefix="r"),
    )
    waiting = begin(definition).state
    assert waiting.status is InstanceStatus.WAITING
    parent = waiting.tokens[0]
    assert parent.state is TokenState.ON_HOLD
    assert (parent.sync_node_tokens_count, parent.sync_node_tokens_finished) == (2, 1)
    arrived = token_at(waiting, "join", alive=False)
    assert arrived.state is TokenState.INACTIVE
    assert arrived.blocked_on is not None and arrived.blocked_on.kind == "join"
    versions = {t.id: t.version for t in waiting.tokens}
    done = engine.complete_task(definition, waiting, now=NOW, ids=Ids()).state
    assert done.status is InstanceStatus.COMPLETED
    assert done.tokens[0].state is TokenState.INACTIVE
    assert done.tokens[0].sync_node_tokens_finished == 2
    assert all(t.version > versions[t.id] for t in done.tokens if t.id != arrived.id)
    assert all(t.blocked_on is None for t in done.tokens)


def test_parallel_gateway_ignores_conditions() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        script("a", "a = 1;"),
        script("b", "b = 1;"),
        gateway("parallel", "join"),
        end(),
        flow("f0", "start", "fork"),
        flow("fa", "fork", "a", "false"),
        flow("fb", "fork", "b", "false"),
        chain("a", "join", prefix="p"),
        chain("b", "join", prefix="q"),
        chain("join", "end", prefix="r"),
    )
    assert begin(definition).state.variables == {"a": 1, "b": 1}


def _inclusive(second_branch: str) -> Definition:
    return model(
        start(),
        gateway("inclusive", "split", default="f_d"),
        script("a", "a = true;"),
        second_branch,
        script("d", "d = true;"),
        gateway("inclusive", "merge"),
        script("after", "after = (context.after || 0) + 1;"),
        end(),
        flow("f0", "start", "split"),
        flow("f_a", "split", "a", "x > 1"),
        flow("f_b", "split", "b", "x > 2"),
        flow("f_d", "split", "d"),
        chain("a", "merge", prefix="p"),
        chain("b", "merge", prefix="q"),
        chain("d", "merge", prefix="r"),
        chain("merge", "after", "end", prefix="s"),
    )


def test_inclusive_gateway_takes_every_true_flow_else_default_and_joins_once() -> None:
    definition = _inclusive(script("b", "b = true;"))
    both = begin(definition, {"x": 5}).state
    assert both.status is InstanceStatus.COMPLETED
    assert (both.variables.get("a"), both.variables.get("b"), both.variables.get("d")) == (True, True, None)
    assert both.variables["after"] == 1
    assert both.tokens[0].sync_node_tokens_count == 2
    one = begin(definition, {"x": 2}).state
    assert (one.variables.get("a"), one.variables.get("b"), one.variables["after"]) == (True, None, 1)
    default = begin(definition, {"x": 0}).state
    assert (default.variables.get("d"), default.variables["after"]) == (True, 1)


def test_inclusive_join_waits_for_a_live_branch_and_not_for_dead_ones() -> None:
    definition = _inclusive(user("b"))
    waiting = begin(definition, {"x": 5}).state
    assert waiting.status is InstanceStatus.WAITING
    assert "after" not in waiting.variables  # branch b is alive and can still reach the merge
    assert token_at(waiting, "merge", alive=False).blocked_on is not None
    done = engine.complete_task(definition, waiting, now=NOW, ids=Ids(), task_id="b").state
    assert done.status is InstanceStatus.COMPLETED
    assert done.variables["after"] == 1


def test_inclusive_join_fires_when_the_other_branch_ends_elsewhere() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        gateway("inclusive", "merge"),
        script("a", "a = 1;"),
        gateway("exclusive", "xor", default="to_end"),
        user("u"),
        end("dead"),
        script("after", "after = (context.after || 0) + 1;"),
        end(),
        chain("start", "fork"),
        chain("fork", "a", "merge", prefix="p"),
        flow("q1", "fork", "u"),
        flow("q2", "u", "xor"),
        flow("to_merge", "xor", "merge", "context.go === true"),
        flow("to_end", "xor", "dead"),
        chain("merge", "after", "end", prefix="r"),
    )
    waiting = begin(definition).state
    assert "after" not in waiting.variables
    done = engine.complete_task(definition, waiting, now=NOW, ids=Ids(), result={}).state
    done_vars = done.variables
    assert done.status is InstanceStatus.COMPLETED
    assert done_vars["after"] == 1


def test_activity_with_several_outgoing_flows_splits_implicitly() -> None:
    definition = model(
        start(),
        script("s", "", default="f_d"),
        script("cond", "c = true;"),
        script("plain", "p = true;"),
        script("dflt", "d = true;"),
        end("e1"),
        end("e2"),
        end("e3"),
        flow("f0", "start", "s"),
        flow("f_c", "s", "cond", "test == 'a'"),
        flow("f_p", "s", "plain"),
        flow("f_d", "s", "dflt"),
        flow("g1", "cond", "e1"),
        flow("g2", "plain", "e2"),
        flow("g3", "dflt", "e3"),
    )
    taken = begin(definition, {"test": "a"}).state
    assert taken.status is InstanceStatus.COMPLETED
    assert (taken.variables.get("c"), taken.variables.get("p"), taken.variables.get("d")) == (
        True,
        True,
        None,
    )
    not_taken = begin(definition, {"test": "b"}).state
    assert (not_taken.variables.get("c"), not_taken.variables.get("p"), not_taken.variables.get("d")) == (
        None,
        True,
        True,
    )
    parent = taken.tokens[0]
    assert parent.sync_node_tokens_count == 2 and parent.state is TokenState.INACTIVE


def test_activity_with_several_incoming_flows_runs_once_per_token() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        script("a", ""),
        script("b", ""),
        script("merge", "runs = (context.runs || 0) + 1;"),
        end(),
        chain("start", "fork"),
        chain("fork", "a", "merge", prefix="p"),
        chain("fork", "b", "merge", prefix="q"),
        chain("merge", "end", prefix="r"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables["runs"] == 2
    assert state.tokens[0].state is TokenState.INACTIVE  # the split parent ends with its children


def test_parallel_join_fed_by_an_exclusive_branch_waits_forever() -> None:
    definition = model(
        start(),
        gateway("exclusive", "xor"),
        script("a", ""),
        script("b", ""),
        gateway("parallel", "join"),
        script("after", "after = true;"),
        end(),
        chain("start", "xor"),
        flow("fa", "xor", "a", "true"),
        flow("fb", "xor", "b", "false"),
        chain("a", "join", prefix="p"),
        chain("b", "join", prefix="q"),
        chain("join", "after", "end", prefix="r"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.WAITING
    assert "after" not in state.variables
    [token] = state.tokens
    assert token.blocked_on is not None and token.blocked_on.kind == "join"
    assert token.blocked_on.description == "Waiting at 'join' for the other incoming branches"


def test_join_of_tokens_from_different_splits_continues_with_a_fresh_token() -> None:
    # fork makes three children; two of them meet at join1 while the third is still running
    definition = model(
        start(),
        gateway("parallel", "fork"),
        script("a", ""),
        script("b", ""),
        user("c"),
        gateway("parallel", "join1"),
        gateway("parallel", "join2"),
        script("after", "after = (context.after || 0) + 1;"),
        end(),
        chain("start", "fork"),
        chain("fork", "a", "join1", prefix="p"),
        chain("fork", "b", "join1", prefix="q"),
        chain("fork", "c", "join2", prefix="r"),
        chain("join1", "join2", prefix="s"),
        chain("join2", "after", "end", prefix="t"),
    )
    waiting = begin(definition).state
    parent = waiting.tokens[0]
    assert parent.state is TokenState.ON_HOLD
    fresh = token_at(waiting, "join2", alive=False)
    assert fresh.parent_token_id == parent.id and fresh.id == 5
    assert parent.sync_node_tokens_count == 4  # three children plus the token continuing from join1
    done = engine.complete_task(definition, waiting, now=NOW, ids=Ids()).state
    assert done.status is InstanceStatus.COMPLETED
    assert done.variables["after"] == 1
    assert done.tokens[0].current_node_id == "end"  # the parent was reactivated at join2


def test_completion_and_start_quantity() -> None:
    definition = model(
        start(),
        script("send", "", completionQuantity="2"),
        script("forward", "fwd = (context.fwd || 0) + 1;"),
        script("receive", "rcv = (context.rcv || 0) + 1;", startQuantity="2"),
        end(),
        chain("start", "send", "forward", "receive", "end"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.COMPLETED
    assert (state.variables["fwd"], state.variables["rcv"]) == (2, 1)


def test_start_quantity_not_reached_waits() -> None:
    definition = model(
        start(), script("receive", "rcv = 1;", startQuantity="2"), end(), chain("start", "receive", "end")
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.WAITING
    [token] = state.tokens
    assert token.blocked_on is not None
    assert token.blocked_on.description == "Waiting at 'receive' for 2 tokens"
