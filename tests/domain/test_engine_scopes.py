"""Embedded subprocesses, call activities, error events and boundaries, terminate end events."""

from __future__ import annotations

from domain import engine
from domain.model import Definition, ProcessGraph
from domain.state import InstanceStatus, TokenState
from tests.domain.engine_support import (
    NOW,
    Ids,
    begin,
    call,
    chain,
    document,
    end,
    error,
    error_boundary,
    events_of,
    gateway,
    model,
    process,
    script,
    start,
    subprocess,
    token_at,
    user,
)


def test_embedded_subprocess_runs_in_its_own_scope_and_parent_waits_on_it() -> None:
    definition = model(
        start(),
        subprocess(
            "sub",
            start("s_start"),
            user("inner"),
            end("s_end"),
            chain("s_start", "inner", "s_end", prefix="i"),
            name="Checks",
        ),
        script("after", "after = true;"),
        end(),
        chain("start", "sub", "after", "end"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.WAITING
    holder = token_at(state, "sub", alive=False)
    assert holder.state is TokenState.ON_HOLD
    assert holder.blocked_on is not None and holder.blocked_on.kind == "subprocess"
    inner = token_at(state, "inner")
    assert inner.parent_token_id == holder.id and inner.scope == "sub"
    done = engine.complete_task(definition, state, now=NOW, ids=Ids()).state
    assert done.status is InstanceStatus.COMPLETED
    assert done.variables["after"] is True
    assert done.tokens[0].back_seq == ["start", "sub", "after", "end"]
    assert "inner" in done.completed_tasks


def test_call_activity_runs_the_called_process_of_the_same_document_sharing_variables() -> None:
    definition = document(
        process(
            start(),
            call("c", "Called"),
            script("after", "seen = marker;"),
            end(),
            chain("start", "c", "after", "end"),
            ident="Main",
        ),
        process(
            start("cs"),
            script("mark", "marker = 'set';"),
            end("ce"),
            chain("cs", "mark", "ce"),
            ident="Called",
        ),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables["seen"] == "set"
    inner = next(t for t in state.tokens if t.process_key == "Called")
    assert inner.back_seq == ["cs", "mark", "ce"]
    assert state.completed_tasks == ["start", "mark", "c", "after"]


def test_call_activity_uses_the_lookup_for_other_deployments_and_global_tasks() -> None:
    other = document(
        process(
            start("os"), script("o", "fromOther = true;"), end("oe"), chain("os", "o", "oe"), ident="Other"
        )
    )
    definition = document(
        '<globalScriptTask id="G"><script>fromGlobal = true;</script></globalScriptTask>',
        process(
            start(),
            call("c1", "Other"),
            call("c2", "G"),
            end(),
            chain("start", "c1", "c2", "end"),
            ident="Main",
        ),
    )

    def lookup(key: str) -> ProcessGraph | None:
        return other.processes.get(key)

    state = begin(definition, lookup=lookup).state
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables == {"fromOther": True, "fromGlobal": True}


def test_unknown_called_element_fails_clearly() -> None:
    definition = model(start(), call("c", "Nowhere", name="Call it"), end(), chain("start", "c", "end"))
    state = begin(definition).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert state.error.error_message == "Call activity 'c' (Call it) calls 'Nowhere', which is not deployed."


def _boundary_on_task(code_ref: str | None, thrown: str) -> Definition:
    return document(
        error("E1", "E_ONE"),
        process(
            start(),
            script("risky", f"throw new BpmnError('{thrown}', 'went wrong');"),
            error_boundary("b", "risky", code_ref),
            script("handler", "handled = _lastError.errorCode;"),
            script("after", "after = true;"),
            end(),
            end("e2"),
            chain("start", "risky", "after", "end"),
            chain("b", "handler", "e2", prefix="h"),
        ),
    )


def test_script_bpmn_error_is_caught_by_a_boundary_with_its_code_or_without_code() -> None:
    exact = begin(_boundary_on_task("E1", "E_ONE")).state
    assert exact.status is InstanceStatus.COMPLETED
    assert exact.variables["handled"] == "E_ONE" and "after" not in exact.variables
    catch_all = begin(_boundary_on_task(None, "ANY")).state
    assert catch_all.variables["handled"] == "ANY"


def test_unmatched_bpmn_error_puts_the_instance_in_error() -> None:
    state = begin(_boundary_on_task("E1", "OTHER")).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None and state.error.error_code == "OTHER"
    assert state.error.error_message == "Unhandled BPMN error 'OTHER' in 'risky': went wrong"
    assert state.variables["_lastError"] == {"errorCode": "OTHER", "errorMessage": state.error.error_message}


def _error_in_subprocess(inner_throw: str) -> Definition:
    return document(
        error("E1", "E_ONE"),
        process(
            start(),
            subprocess(
                "sub",
                start("s0"),
                gateway("parallel", "fork"),
                user("waits"),
                inner_throw,
                end("s_end"),
                chain("s0", "fork", prefix="i"),
                chain("fork", "waits", "s_end", prefix="j"),
                chain("fork", "thrower", prefix="k"),
            ),
            error_boundary("b", "sub", "E1"),
            script("handler", "handled = true;"),
            script("after", "after = true;"),
            end(),
            end("e2"),
            chain("start", "sub", "after", "end"),
            chain("b", "handler", "e2", prefix="h"),
        ),
    )


def test_error_end_event_inside_a_subprocess_interrupts_it_via_the_boundary() -> None:
    definition = _error_in_subprocess(end("thrower", "error", "E1"))
    transition = begin(definition)
    state = transition.state
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables["handled"] is True and "after" not in state.variables
    assert token_at(state, "waits", alive=False).state is TokenState.DISMISSED
    assert [e.node_id for e in events_of(transition, "ErrorCaught")] == ["b"]


def test_script_error_inside_a_subprocess_walks_out_to_the_subprocess_boundary() -> None:
    definition = _error_in_subprocess(
        script("thrower", "throw new BpmnError('E_ONE', 'inner');")
        + end("t_end")
        + chain("thrower", "t_end")[0]
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.COMPLETED
    assert state.variables["handled"] is True
    assert state.variables["_lastError"] == {"errorCode": "E_ONE", "errorMessage": "inner"}


def test_uncaught_error_end_event_ends_the_instance_with_outcome_error() -> None:
    definition = document(
        error("E1", "E_TOP"),
        process(
            start(),
            gateway("parallel", "fork"),
            user("waits"),
            end("boom", "error", "E1"),
            end(),
            chain("start", "fork"),
            chain("fork", "waits", "end", prefix="p"),
            chain("fork", "boom", prefix="q"),
        ),
    )
    transition = begin(definition)
    state = transition.state
    assert state.status is InstanceStatus.COMPLETED
    assert state.outcome == "error"
    assert state.variables["_lastError"]["errorCode"] == "E_TOP"
    assert token_at(state, "waits", alive=False).state is TokenState.TERMINATED
    [reached] = events_of(transition, "ErrorEndEventReached")
    assert reached.node_id == "boom" and reached.data == {
        "errorCode": "E_TOP",
        "errorMessage": "Error end event 'boom' threw 'E_TOP'.",
    }


def test_terminate_end_event_in_a_parallel_branch_terminates_the_instance() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        user("waits"),
        end("stop", "terminate"),
        end(),
        chain("start", "fork"),
        chain("fork", "waits", "end", prefix="p"),
        chain("fork", "stop", prefix="q"),
    )
    transition = begin(definition)
    state = transition.state
    assert state.status is InstanceStatus.COMPLETED and state.outcome == "terminated"
    assert token_at(state, "waits", alive=False).state is TokenState.TERMINATED
    assert token_at(state, "stop", alive=False).state is TokenState.INACTIVE
    assert state.tokens[0].state is TokenState.TERMINATED  # the split parent
    assert events_of(transition, "TerminateEndEventReached")


def test_terminate_inside_a_subprocess_ends_only_that_subprocess() -> None:
    definition = model(
        start(),
        subprocess(
            "sub",
            start("s0"),
            gateway("parallel", "fork"),
            user("waits"),
            end("stop", "terminate"),
            end("s_end"),
            chain("s0", "fork", prefix="i"),
            chain("fork", "waits", "s_end", prefix="j"),
            chain("fork", "stop", prefix="k"),
        ),
        script("after", "after = true;"),
        end(),
        chain("start", "sub", "after", "end"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.COMPLETED and state.outcome == "success"
    assert state.variables["after"] is True
    assert token_at(state, "waits", alive=False).state is TokenState.TERMINATED
