"""Starting instances, sequences, scripts, variables and result mapping, history, determinism."""

from __future__ import annotations

import pytest

from domain import engine
from domain.errors import (
    InvalidStateForCommand,
    MandatoryParamsMissing,
    MultipleStartNodes,
    StartNodeNotFound,
)
from domain.state import (
    ExecutionMode,
    InstanceStatus,
    NodeStatus,
    TokenState,
    copy_state,
    decode_state,
    encode_state,
)
from tests.domain.engine_support import (
    NOW,
    Ids,
    begin,
    chain,
    document,
    end,
    model,
    process,
    script,
    start,
    task,
)


def test_sequence_runs_to_completion_and_records_everything() -> None:
    definition = model(
        start(), script("s1", "x = 1;", name="First"), task("t2"), end(), chain("start", "s1", "t2", "end")
    )
    transition = begin(definition, {"y": 5}, actor="alice")
    state = transition.state
    assert state.status is InstanceStatus.COMPLETED
    assert state.outcome == "success"
    assert state.completed_at == NOW and state.started_at == NOW
    assert state.completed_tasks == ["start", "s1", "t2"]
    assert state.variables == {"y": 5, "x": 1}
    [token] = state.tokens
    assert token.state is TokenState.INACTIVE
    assert token.status_current_node is NodeStatus.EXECUTED_COMPLETE
    assert token.back_seq == ["start", "s1", "t2", "end"]
    assert [a.node_id for a in token.nodes_action_states] == ["start", "s1", "t2", "end"]
    assert token.nodes_action_states[1].name == "First"
    assert token.version == 5  # one per arrival (4) and one for finishing
    assert token.uuid == "id-1"
    types = [e.event_type for e in transition.events]
    assert types == ["InstanceStarted", "TaskCompleted", "TaskCompleted", "InstanceCompleted"]
    assert [e.seq for e in transition.events] == [1, 2, 3, 4]
    assert state.history_seq == 4
    assert transition.events[0].actor == "alice"
    assert transition.events[1].node_type == "ScriptTask"
    assert transition.events[1].data == {"variablesChanged": ["x"]}
    assert transition.effects == []


def test_start_picks_the_named_start_node_among_several() -> None:
    definition = model(
        start("a"),
        start("b"),
        script("sa", "via = 'a';"),
        script("sb", "via = 'b';"),
        end("e1"),
        end("e2"),
        chain("a", "sa", "e1"),
        chain("b", "sb", "e2", prefix="g"),
    )
    with pytest.raises(MultipleStartNodes) as caught:
        begin(definition)
    assert caught.value.message == "Multiple start nodes found, but start condition not specified."
    assert begin(definition, start_node_id="b").state.variables == {"via": "b"}
    with pytest.raises(StartNodeNotFound) as missing:
        begin(definition, start_node_id="nope")
    assert missing.value.message == "Start node for process definition not found."
    assert [n.id for n in engine.start_nodes(definition, "P")] == ["a", "b"]


def test_process_without_start_event_is_refused() -> None:
    definition = model(task("t"), end(), chain("t", "end"))
    with pytest.raises(StartNodeNotFound, match=r"^Start node for process definition not found\.$"):
        begin(definition)


def test_mandatory_params_are_checked() -> None:
    definition = model(start(props={"mandatoryParams": "amount, customer"}), end(), chain("start", "end"))
    with pytest.raises(MandatoryParamsMissing) as caught:
        begin(definition, {"amount": 10})
    assert caught.value.message == "Some mandatory params are missing."
    assert caught.value.details == {"missingParams": ["customer"]}
    assert begin(definition, {"amount": 10, "customer": "c"}).state.status is InstanceStatus.COMPLETED


def test_process_key_selects_a_process_of_the_document() -> None:
    definition = document(
        process(start(), script("s", "who = 'first';"), end(), chain("start", "s", "end"), ident="First"),
        process(
            start("st2"), script("s2", "who = 'second';"), end("e2"), chain("st2", "s2", "e2"), ident="Second"
        ),
    )
    assert begin(definition).state.variables["who"] == "first"
    second = begin(definition, process_key="Second").state
    assert second.variables["who"] == "second"
    assert second.process_key == "Second"
    with pytest.raises(StartNodeNotFound):
        begin(definition, process_key="Third")


def test_script_result_goes_to_default_variable_or_mapping() -> None:
    body = "return {score: 7, detail: {grade: 'A'}};"
    plain = model(start(), script("s", body), end(), chain("start", "s", "end"))
    assert begin(plain).state.variables["lastScriptResult"] == {"score": 7, "detail": {"grade": "A"}}
    mapped = model(
        start(),
        script(
            "s",
            body,
            props={"ResultVariable": "outcome", "OutputMapping": '{"grade": "detail.grade", "s": "score"}'},
        ),
        end(),
        chain("start", "s", "end"),
    )
    variables = begin(mapped).state.variables
    assert variables == {"outcome": {"score": 7, "detail": {"grade": "A"}}, "grade": "A", "s": 7}


def test_script_without_return_stores_no_result() -> None:
    definition = model(start(), script("s", "a = 1;"), end(), chain("start", "s", "end"))
    assert "lastScriptResult" not in begin(definition).state.variables


def test_input_mapping_builds_what_the_script_sees() -> None:
    definition = model(
        start(),
        script("s", "return {city: town};", props={"InputMapping": '{"town": "customer.address.city"}'}),
        end(),
        chain("start", "s", "end"),
    )
    variables = begin(definition, {"customer": {"address": {"city": "Oslo"}}}).state.variables
    assert variables["lastScriptResult"] == {"city": "Oslo"}
    assert "town" not in variables  # the mapped name is only what the task sees


def test_malformed_output_mapping_fails_the_task() -> None:
    definition = model(
        start(),
        script("s", "return 1;", props={"OutputMapping": "[1, 2]"}),
        end(),
        chain("start", "s", "end"),
    )
    state = begin(definition).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert state.error.error_message == "OutputMapping of 's' must be a JSON object of variable paths."


def test_engine_never_mutates_the_state_it_was_given() -> None:
    definition = model(start(), script("s", "n = n + 1;"), end(), chain("start", "s", "end"))
    user_model = model(
        start(), "<userTask id='u'/>", script("s", "n = n + 1;"), end(), chain("start", "u", "s", "end")
    )
    waiting = begin(user_model, {"n": 1}).state
    frozen = encode_state(waiting)
    after = engine.complete_task(user_model, waiting, now=NOW, ids=Ids(), result={"ok": True})
    assert encode_state(waiting) == frozen
    assert after.state.variables["n"] == 2
    assert begin(definition, {"n": 1}).state.variables["n"] == 2


def test_same_inputs_give_the_same_transition() -> None:
    definition = model(
        start(),
        "<parallelGateway id='fork'/>",
        script("a", "x = 1;"),
        script("b", "y = 2;"),
        "<parallelGateway id='join'/>",
        end(),
        chain("start", "fork"),
        chain("fork", "a", "join", prefix="p"),
        chain("fork", "b", "join", prefix="q"),
        chain("join", "end", prefix="r"),
    )
    first, second = begin(definition), begin(definition)
    assert encode_state(first.state) == encode_state(second.state)
    assert [e.event_type for e in first.events] == [e.event_type for e in second.events]


def test_variables_must_be_json() -> None:
    definition = model(start(), end(), chain("start", "end"))
    with pytest.raises(InvalidStateForCommand, match="JSON"):
        begin(definition, {"bad": object()})


def test_execution_mode_is_kept_on_the_state() -> None:
    definition = model(start(), end(), chain("start", "end"))
    state = begin(definition).state
    assert state.execution_mode is ExecutionMode.UNSUPERVISED
    assert decode_state(encode_state(state)) == copy_state(state)
