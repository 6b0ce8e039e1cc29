"""User and service tasks, signals, failures, retry, skip, cancel and the loop guard."""

from __future__ import annotations

import msgspec
import pytest

from domain import engine
from domain.errors import InvalidAction, InvalidStateForCommand, TaskNotWaiting
from domain.model import Definition
from domain.state import InstanceStatus, NodeStatus, TokenState
from domain.transition import CallService, CancelJobs
from tests.domain.engine_support import (
    LATER,
    NOW,
    Ids,
    begin,
    chain,
    end,
    error,
    error_boundary,
    events_of,
    flow,
    gateway,
    model,
    script,
    service,
    start,
    token_at,
    user,
)

ACTIONS = '[{"action": "approve", "label": "Approve Loan"}, "reject"]'


def _approval() -> Definition:
    return model(
        start(),
        user("review", props={"UserActions": ACTIONS}, name="Review", **{"camunda:assignee": "bob"}),
        end(),
        chain("start", "review", "end"),
    )


def test_user_task_waits_and_completes_with_action_and_user() -> None:
    definition = _approval()
    started = begin(definition)
    state = started.state
    assert state.status is InstanceStatus.WAITING
    token = token_at(state, "review")
    assert token.status_current_node is NodeStatus.EXECUTED_PARTIAL
    assert token.blocked_on is not None and token.blocked_on.kind == "userTask"
    assert token.blocked_on.description == "Waiting for user task 'review' (Review)"
    assert [e.event_type for e in started.events] == ["InstanceStarted", "UserTaskWaiting"]
    done = engine.complete_task(
        definition, state, now=LATER, ids=Ids(), result={"amount": 5}, action="approve", actor="bob"
    )
    assert done.state.status is InstanceStatus.COMPLETED
    assert done.state.completed_at == LATER
    assert done.state.variables["lastUserTaskResult"] == {
        "amount": 5,
        "action": "approve",
        "currentUser": "bob",
    }
    [completed] = events_of(done, "TaskCompleted")
    assert completed.actor == "bob" and completed.node_type == "UserTask"


def test_user_task_action_must_be_one_of_the_declared_ones() -> None:
    definition = _approval()
    state = begin(definition).state
    with pytest.raises(InvalidAction) as caught:
        engine.complete_task(definition, state, now=NOW, ids=Ids(), action="maybe")
    assert (
        caught.value.message == "Action 'maybe' is not allowed for task 'review'; allowed: approve, reject."
    )
    with pytest.raises(InvalidAction, match="needs an action; allowed: approve, reject"):
        engine.complete_task(definition, state, now=NOW, ids=Ids())
    assert engine.complete_task(definition, state, now=NOW, ids=Ids(), action="reject").state.status is (
        InstanceStatus.COMPLETED
    )


def _two_user_tasks() -> Definition:
    return model(
        start(),
        gateway("parallel", "fork"),
        user("a"),
        user("b"),
        gateway("parallel", "join"),
        end(),
        chain("start", "fork"),
        chain("fork", "a", "join", prefix="p"),
        chain("fork", "b", "join", prefix="q"),
        chain("join", "end", prefix="r"),
    )


def test_task_selection_by_task_id_token_id_or_the_only_one() -> None:
    definition = _two_user_tasks()
    state = begin(definition).state
    with pytest.raises(InvalidStateForCommand) as several:
        engine.complete_task(definition, state, now=NOW, ids=Ids())
    assert several.value.message == "Several tasks are waiting; name one with taskId: a, b."
    with pytest.raises(TaskNotWaiting) as missing:
        engine.complete_task(definition, state, now=NOW, ids=Ids(), task_id="zzz")
    assert missing.value.message == "Task 'zzz' is not waiting for a signal."
    with pytest.raises(TaskNotWaiting, match=r"Token 99 is not waiting on a task\."):
        engine.complete_task(definition, state, now=NOW, ids=Ids(), token_id=99)
    after_a = engine.complete_task(definition, state, now=NOW, ids=Ids(), task_id="a").state
    assert after_a.status is InstanceStatus.WAITING
    only_b = token_at(after_a, "b")
    done = engine.complete_task(definition, after_a, now=NOW, ids=Ids()).state  # the only one left
    assert done.status is InstanceStatus.COMPLETED
    assert engine.complete_task(definition, after_a, now=NOW, ids=Ids(), token_id=only_b.id).state.status is (
        InstanceStatus.COMPLETED
    )
    with pytest.raises(InvalidStateForCommand, match="is completed; there is no task to complete"):
        engine.complete_task(definition, done, now=NOW, ids=Ids())


SERVICE_PROPS = {
    "Endpoint": "https://api.example.com/customers/${customerId}",
    "Method": "put",
    "Headers": '{"X-Trace": "${traceId}"}',
    "PayloadTemplate": '{"id": "${customerId}", "name": "Customer ${name}", "tags": ["${tag}"]}',
    "TimeoutMs": "5000",
    "Retries": "2",
    "RetryBackoff": "250",
    "OutputMapping": '{"score": "result.score"}',
}


def _service_model(props: dict[str, str] | None = None, boundary: bool = False) -> Definition:
    parts: list[object] = [
        start(),
        service("call", props=props or SERVICE_PROPS, name="Call API"),
        script("after", "after = true;"),
        end(),
        chain("start", "call", "after", "end"),
    ]
    if boundary:
        parts += [
            error("Err", "NOT_FOUND"),
            error_boundary("caught", "call", "Err"),
            script("handler", "handled = true;"),
            end("e2"),
            chain("caught", "handler", "e2", prefix="h"),
        ]
        return _with_error_decl(parts)
    return model(*parts)


def _with_error_decl(parts: list[object]) -> Definition:
    from tests.domain.engine_support import document, process

    decl = [p for p in parts if isinstance(p, str) and p.startswith("<error ")]
    rest = [p for p in parts if p not in decl]
    return document(*decl, process(*rest))


def test_service_task_requests_a_call_and_completes_with_the_response() -> None:
    definition = _service_model()
    variables = {"customerId": 42, "traceId": "t-1", "name": "Ann", "tag": "vip"}
    started = begin(definition, variables)
    state = started.state
    assert state.status is InstanceStatus.RUNNING
    [call] = started.effects
    assert isinstance(call, CallService)
    assert call.endpoint == "https://api.example.com/customers/42"
    assert call.method == "PUT"
    assert call.headers == {"X-Trace": "t-1"}
    assert call.payload == {"id": 42, "name": "Customer Ann", "tags": ["vip"]}
    assert (call.timeout_ms, call.retries, call.retry_backoff_ms, call.attempt_group) == (5000, 2, 250, 1)
    token = token_at(state, "call")
    assert call.token_id == token.id and call.node_id == "call"
    assert token.status_current_node is NodeStatus.EXECUTING
    assert (
        token.blocked_on is not None and token.blocked_on.kind == "job" and token.blocked_on.job_attempt == 1
    )
    assert [e.event_type for e in started.events] == ["InstanceStarted", "ServiceCallRequested"]
    # a client's signal naming the task must not stand in for the service's answer
    with pytest.raises(TaskNotWaiting, match="not waiting for a signal"):
        engine.complete_task(definition, state, now=NOW, ids=Ids(), task_id="call", result={"forged": True})
    with pytest.raises(TaskNotWaiting):
        engine.complete_task(definition, state, now=NOW, ids=Ids(), result={"forged": True})
    done = engine.complete_task(
        definition, state, now=NOW, ids=Ids(), token_id=token.id, result={"result": {"score": 9}}
    ).state
    assert done.status is InstanceStatus.COMPLETED
    assert done.variables["score"] == 9 and done.variables["after"] is True


def test_a_secret_in_the_endpoint_query_stays_out_of_state_and_history() -> None:
    definition = _service_model({"Endpoint": "https://user:pw@api.test/score?api_key=${key}"})
    started = begin(definition, {"key": "TOPSECRET"})
    [call] = started.effects
    assert isinstance(call, CallService) and call.endpoint is not None and "TOPSECRET" in call.endpoint
    # the variables hold the key by design; tokens (blockedOn) and history must not
    shown = msgspec.json.encode(started.state.tokens) + b"".join(msgspec.json.encode(e) for e in started.events)
    assert b"TOPSECRET" not in shown and b"pw@" not in shown
    assert b"https://api.test/score" in shown


def test_service_task_default_payload_is_every_variable_and_result_default_variable() -> None:
    definition = _service_model({"Endpoint": "https://x.test/run"})
    started = begin(definition, {"a": 1})
    [call] = started.effects
    assert isinstance(call, CallService)
    assert call.payload == {"a": 1} and call.method == "POST"
    assert (call.timeout_ms, call.retries, call.retry_backoff_ms) == (30000, 3, 1000)
    done = engine.complete_task(
        definition, started.state, now=NOW, ids=Ids(), token_id=call.token_id, result=[1]
    )
    assert done.state.variables["lastServiceResult"] == [1]


def test_failed_service_call_puts_the_instance_in_error_and_retry_calls_again() -> None:
    definition = _service_model({"Endpoint": "https://x.test/run"})
    started = begin(definition)
    token_id = started.effects[0].token_id
    failed = engine.fail_task(
        definition,
        started.state,
        token_id=token_id,
        message="HTTP 503",
        details="body: down",
        now=LATER,
        ids=Ids(),
    )
    state = failed.state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert (state.error.task_id, state.error.task_name) == ("call", "Call API")
    assert state.error.error_message == "Service task 'call' (Call API) failed: HTTP 503"
    assert state.error.error_details == "body: down"
    assert state.error.occurred_at == LATER and state.error.token_id == token_id
    assert [e.event_type for e in failed.events] == ["TaskFailed", "InstanceErrored"]
    with pytest.raises(TaskNotWaiting):
        engine.fail_task(definition, state, token_id=token_id, message="again", now=NOW, ids=Ids())
    retried = engine.retry_failed(
        definition,
        state,
        updated_variables={"fixed": True},
        comment="try again",
        actor="ops",
        now=NOW,
        ids=Ids(),
    )
    assert retried.state.status is InstanceStatus.RUNNING
    assert retried.state.error is None
    assert retried.state.variables["fixed"] is True
    [again] = retried.effects
    assert isinstance(again, CallService) and again.attempt_group == 2
    [event] = events_of(retried, "TaskRetried")
    assert (event.actor, event.comment, event.data) == (
        "ops",
        "try again",
        {"variablesChanged": {"fixed": True}},
    )


def test_service_error_code_follows_the_matching_boundary() -> None:
    definition = _service_model({"Endpoint": "https://x.test/run"}, boundary=True)
    started = begin(definition)
    token_id = started.effects[0].token_id
    caught = engine.fail_task(
        definition,
        started.state,
        token_id=token_id,
        message="missing",
        error_code="NOT_FOUND",
        now=NOW,
        ids=Ids(),
    ).state
    assert caught.status is InstanceStatus.COMPLETED
    assert caught.variables["handled"] is True and "after" not in caught.variables
    assert caught.variables["_lastError"] == {"errorCode": "NOT_FOUND", "errorMessage": "missing"}
    other = engine.fail_task(
        definition, started.state, token_id=token_id, message="boom", error_code="OTHER", now=NOW, ids=Ids()
    ).state
    assert other.status is InstanceStatus.ERROR
    assert other.error is not None and other.error.error_code == "OTHER"
    assert other.error.error_message == "Unhandled BPMN error 'OTHER' in 'call' (Call API): boom"


def test_skip_leaves_the_failed_task_without_running_it() -> None:
    definition = model(
        start(),
        script("bad", "throw new Error('nope');"),
        script("after", "after = true;"),
        end(),
        chain("start", "bad", "after", "end"),
    )
    failed = begin(definition).state
    assert failed.status is InstanceStatus.ERROR
    assert failed.error is not None and "nope" in failed.error.error_message
    token = token_at(failed, "bad")
    assert token.blocked_on is not None and token.blocked_on.kind == "error"
    skipped = engine.skip_failed(
        definition,
        failed,
        additional_data={"note": "skipped"},
        comment="known issue",
        actor="ops",
        now=NOW,
        ids=Ids(),
    )
    assert skipped.state.status is InstanceStatus.COMPLETED
    assert skipped.state.variables["note"] == "skipped" and skipped.state.variables["after"] is True
    assert "bad" not in skipped.state.completed_tasks
    [event] = events_of(skipped, "TaskSkipped")
    assert (event.actor, event.comment, event.node_id) == ("ops", "known issue", "bad")


def test_retry_runs_a_failed_script_again_with_the_new_variables() -> None:
    definition = model(
        start(),
        script("div", "if (!ready) { throw new Error('not ready'); } ok = true;"),
        end(),
        chain("start", "div", "end"),
    )
    failed = begin(definition, {"ready": False}).state
    assert failed.status is InstanceStatus.ERROR
    retried = engine.retry_failed(
        definition, failed, updated_variables={"ready": True}, comment=None, actor=None, now=NOW, ids=Ids()
    )
    assert retried.state.status is InstanceStatus.COMPLETED and retried.state.variables["ok"] is True


def test_retry_and_skip_need_an_instance_in_error() -> None:
    definition = _approval()
    state = begin(definition).state
    with pytest.raises(InvalidStateForCommand) as caught:
        engine.retry_failed(
            definition, state, updated_variables={}, comment=None, actor=None, now=NOW, ids=Ids()
        )
    assert caught.value.message == "Instance 'inst-1' is not in error; only a failed task can be retried."
    with pytest.raises(InvalidStateForCommand, match="only a failed task can be skipped"):
        engine.skip_failed(
            definition, state, additional_data={}, comment=None, actor=None, now=NOW, ids=Ids()
        )


def test_cancel_dismisses_every_live_token_and_cancels_jobs() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        user("u"),
        service("s", props={"Endpoint": "https://x.test"}),
        gateway("parallel", "join"),
        end(),
        chain("start", "fork"),
        chain("fork", "u", "join", prefix="p"),
        chain("fork", "s", "join", prefix="q"),
        chain("join", "end", prefix="r"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.RUNNING  # a job is pending
    cancelled = engine.cancel(definition, state, reason="duplicate", actor="ops", now=LATER, ids=Ids())
    new = cancelled.state
    assert new.status is InstanceStatus.CANCELLED and new.outcome == "cancelled" and new.completed_at == LATER
    assert {t.state for t in new.tokens} == {TokenState.DISMISSED}
    assert cancelled.effects == [CancelJobs(token_id=token_at(state, "s").id, node_id="s")]
    [event] = cancelled.events
    assert (event.event_type, event.actor, event.comment) == ("InstanceCancelled", "ops", "duplicate")
    with pytest.raises(InvalidStateForCommand) as again:
        engine.cancel(definition, new, reason=None, actor=None, now=NOW, ids=Ids())
    assert again.value.message == "Instance 'inst-1' is cancelled; it cannot be cancelled."


def test_endless_loop_stops_with_a_clear_error_and_retry_continues() -> None:
    definition = model(
        start(),
        script("count", "n = n + 1;"),
        gateway("exclusive", "again", default="out"),
        end(),
        chain("start", "count", "again"),
        flow("back", "again", "count", "n < 5000"),
        flow("out", "again", "end"),
    )
    state = begin(definition, {"n": 0}, limits=engine.Limits(max_steps=100)).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert state.error.error_message.startswith("Stopped after 100 steps in one command at node '")
    assert state.error.error_message.endswith("': the model may loop forever.")
    steps = 0
    while state.status is InstanceStatus.ERROR:
        steps += 1
        state = engine.retry_failed(
            definition,
            state,
            updated_variables={},
            comment=None,
            actor=None,
            now=NOW,
            ids=Ids(),
            limits=engine.Limits(max_steps=100),
        ).state
    assert state.status is InstanceStatus.COMPLETED and state.variables["n"] == 5000
    assert steps > 10
