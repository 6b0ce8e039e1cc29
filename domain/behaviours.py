"""What each kind of node does when a token runs it: one `match`, one small function per kind.

`execute` first passes the node's gate (a join, a startQuantity > 1, an unsupported marker,
a supervised pause), then runs the behaviour. A behaviour ends in one of four ways: the token
moves on (`run.leave_node` / `run.complete_activity`), waits (blocked), fails (`run.fail`),
or finishes (`run.end`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain import gateways, results, scripting, service_calls, supervision, timers
from domain.errors import BpmnErrorThrown, ScriptError
from domain.model import TASK_KINDS, EventKind, Node, NodeKind
from domain.state import BlockedOn, NodeStatus, Token
from domain.tokens import JOB, MESSAGE, SIGNAL, TIMER, USER_TASK, block
from domain.transition import ScheduleTimer

if TYPE_CHECKING:
    from domain.runner import Run

# Catch/throw event definitions that behave like a plain pass (the throw is not delivered).
_PASSING_THROWS = frozenset({EventKind.NONE, EventKind.MESSAGE, EventKind.SIGNAL})


def execute(run: Run, token: Token, node: Node, *, gate: bool) -> None:
    if gate and node.id in run.index_for(token.process_key).gated and not _pass_gate(run, token, node):
        return
    if node.kind in TASK_KINDS and not supervision.may_run(run, token, node):
        return
    token.status_current_node = NodeStatus.EXECUTING
    match node.kind:
        case NodeKind.START_EVENT:
            _start_event(run, token, node)
        case NodeKind.END_EVENT:
            _end_event(run, token, node)
        case NodeKind.INTERMEDIATE_CATCH_EVENT:
            _catch_event(run, token, node)
        case NodeKind.INTERMEDIATE_THROW_EVENT:
            _throw_event(run, token, node)
        case NodeKind.BOUNDARY_EVENT:
            run.leave_node(token, node)
        case NodeKind.TASK | NodeKind.MANUAL_TASK | NodeKind.SEND_TASK | NodeKind.BUSINESS_RULE_TASK:
            run.complete_activity(token, node, None, results.DEFAULT_SCRIPT)
        case NodeKind.SCRIPT_TASK:
            _script_task(run, token, node)
        case NodeKind.USER_TASK:
            _user_task(run, token, node)
        case NodeKind.SERVICE_TASK:
            _service_task(run, token, node)
        case NodeKind.RECEIVE_TASK:
            _wait_for_message(run, token, node, NodeStatus.WAITING_MESSAGE, node.prop("messageName"))
        case NodeKind.EXCLUSIVE_GATEWAY | NodeKind.PARALLEL_GATEWAY | NodeKind.INCLUSIVE_GATEWAY:
            run.leave_node(token, node)
        case NodeKind.SUB_PROCESS if not node.triggered_by_event:
            run.enter_scope(token, node, token.process_key, node.id)
        case NodeKind.CALL_ACTIVITY:
            _call_activity(run, token, node)
        case _:
            _unsupported(run, token, node)


def _pass_gate(run: Run, token: Token, node: Node) -> bool:
    """Only for nodes in the graph index's `gated` set; every other node passes."""
    unrun = run.index_for(token.process_key).unrun.get(node.id)
    if unrun is not None:
        run.fail(token, node, f"{gateways.label(node)} cannot run as drawn: {unrun}.")
        return False
    kind = node.kind
    if kind is NodeKind.PARALLEL_GATEWAY and len(node.incoming) > 1:
        return gateways.arrive(run, token, node, gateways.JoinRule.PARALLEL)
    if kind is NodeKind.INCLUSIVE_GATEWAY and len(node.incoming) > 1:
        return gateways.arrive(run, token, node, gateways.JoinRule.INCLUSIVE)
    if node.is_task or kind is NodeKind.SUB_PROCESS:
        if node.loop is not None:
            what = "Multi-instance" if node.loop.kind == "multiInstance" else "Loop"
            run.fail(token, node, f"{what} activities are not supported yet ({gateways.label(node)}).")
            return False
        if node.start_quantity < 1 or node.completion_quantity < 1:
            text = f"startQuantity and completionQuantity of {gateways.label(node)} must be at least 1."
            run.fail(token, node, text)
            return False
        if node.start_quantity > 1:
            return gateways.arrive(run, token, node, gateways.JoinRule.QUANTITY)
    return True


def _unsupported(run: Run, token: Token, node: Node) -> None:
    event = node.event
    detail = f" with a {event.kind.value} event definition" if event is not None else ""
    text = f"{gateways.label(node)} is a {node.kind.value}{detail}, which flowcore does not run yet."
    run.fail(token, node, text)


def _start_event(run: Run, token: Token, node: Node) -> None:
    if token.process_key is None and node.scope is None:
        run.state.completed_tasks.append(node.id)
    run.leave_node(token, node)


def _end_event(run: Run, token: Token, node: Node) -> None:
    event = node.event
    kind = event.kind if event is not None and len(node.events) == 1 else None
    if event is None or kind in _PASSING_THROWS:
        run.end(token)
    elif kind is EventKind.TERMINATE:
        run.terminate(token, node)
    elif kind is EventKind.ERROR:
        code = event.code
        run.throw_error(token, node, code, f"Error end event {gateways.label(node)} threw '{code}'.",
                        from_end_event=True)
    else:
        _unsupported(run, token, node)


def _catch_event(run: Run, token: Token, node: Node) -> None:
    event = node.event
    if event is None or len(node.events) != 1:
        _unsupported(run, token, node)
    elif event.kind is EventKind.MESSAGE:
        _wait_for_message(run, token, node, NodeStatus.WAITING_MESSAGE_EVENT, event.code)
    elif event.kind is EventKind.TIMER:
        _wait_for_timer(run, token, node)
    elif event.kind is EventKind.SIGNAL:
        block(token, run.now, NodeStatus.WAITING_MESSAGE_EVENT,
              BlockedOn(kind=SIGNAL, task_id=node.id, message_name=event.code,
                        description=f"Waiting for signal '{event.code}'"))
    else:
        _unsupported(run, token, node)


def _wait_for_timer(run: Run, token: Token, node: Node) -> None:
    event = node.event
    assert event is not None
    try:
        due = timers.due_at(event, run.now, run.state.variables)
    except timers.TimerProblem as exc:
        run.fail(token, node, f"Timer {gateways.label(node)}: {exc}")
        return
    except ScriptError as exc:
        run.fail(token, node, f"Timer {gateways.label(node)}: {exc.message}")
        return
    text = f"Waiting until {due.isoformat()}"
    blocked = BlockedOn(kind=TIMER, task_id=node.id, due_at=due, description=text)
    block(token, run.now, NodeStatus.WAITING_TIMER_EVENT, blocked)
    run.effects.append(ScheduleTimer(token_id=token.id, node_id=node.id, due_at=due))


def _throw_event(run: Run, token: Token, node: Node) -> None:
    event = node.event
    if event is None or (len(node.events) == 1 and event.kind in _PASSING_THROWS):
        run.leave_node(token, node)
    else:
        _unsupported(run, token, node)


def _wait_for_message(run: Run, token: Token, node: Node, status: NodeStatus, name: str | None) -> None:
    shown = f"message '{name}'" if name else "a message"
    block(token, run.now, status,
          BlockedOn(kind=MESSAGE, task_id=node.id, message_name=name, description=f"Waiting for {shown}"))


def _script_task(run: Run, token: Token, node: Node) -> None:
    source = node.script
    if not source or not source.strip():
        run.complete_activity(token, node, None, results.DEFAULT_SCRIPT)
        return
    try:
        seen = results.input_view(run.index_for(token.process_key), node, run.state.variables)
        outcome = scripting.run_script(source, seen)
    except results.MappingProblem as exc:
        run.fail(token, node, str(exc))
        return
    except BpmnErrorThrown as exc:
        run.throw_error(token, node, exc.error_code, exc.message, from_end_event=False)
        return
    except ScriptError as exc:
        text = f"Script task {gateways.label(node)} failed: {exc.message}"
        run.fail(token, node, text, details=_details(exc))
        return
    written = results.written_by_script(seen, outcome.variables)
    run.complete_activity(token, node, outcome.result, results.DEFAULT_SCRIPT, written)


def _details(exc: ScriptError) -> str:
    details = exc.details or {}
    for key in ("stack", "details", "line"):
        value = details.get(key)
        if value:
            return str(value)
    return ""


def _user_task(run: Run, token: Token, node: Node) -> None:
    text = f"Waiting for user task {gateways.label(node)}"
    blocked = BlockedOn(kind=USER_TASK, task_id=node.id, description=text)
    block(token, run.now, NodeStatus.EXECUTED_PARTIAL, blocked)
    run.history.add("UserTaskWaiting", node=node, token=token)


def _service_task(run: Run, token: Token, node: Node) -> None:
    group = run.attempt_groups.pop(token.id, 1)
    try:
        index = run.index_for(token.process_key)
        call = service_calls.build_call(index, node, run.state.variables, token.id, group)
    except (ScriptError, results.MappingProblem) as exc:
        message = exc.message if isinstance(exc, ScriptError) else str(exc)
        run.fail(token, node, f"Service task {gateways.label(node)} could not be prepared: {message}")
        return
    target = service_calls.shown_target(call)
    block(token, run.now, NodeStatus.EXECUTING,
          BlockedOn(kind=JOB, task_id=node.id, description=f"Calling {call.method} {target}",
                    job_attempt=1, job_max_attempts=call.retries + 1, attempt_group=group))
    run.effects.append(call)
    supervision.note_side_effect(run, token, node, f"{call.method} {target}")
    run.history.add("ServiceCallRequested", node=node, token=token,
                    data={"endpoint": target, "method": call.method, "attemptGroup": group})


def _call_activity(run: Run, token: Token, node: Node) -> None:
    key = node.called_element
    if not key:
        run.fail(token, node, f"Call activity {gateways.label(node)} names no called element.")
        return
    if run.resolve(key) is None:
        run.fail(token, node, f"Call activity {gateways.label(node)} calls '{key}', which is not deployed.")
        return
    run.enter_scope(token, node, key, "")
