"""Read-only helpers behind the instance state view."""

from __future__ import annotations

from domain import engine, view
from domain.model import Definition
from domain.state import InstanceStatus
from tests.domain.engine_support import NOW, Ids, begin, chain, end, gateway, model, script, start, user


def _model() -> Definition:
    return model(
        start(),
        gateway("parallel", "fork"),
        user(
            "approve",
            props={"UserActions": '["approve", {"action": "reject", "label": "Say no"}]'},
            name="Approve",
            **{"camunda:candidateGroups": "managers"},
        ),
        user("plain", props={"ResponsibleTeam": "ops"}),
        gateway("parallel", "join"),
        script("boom", "throw new Error('bad');"),
        end(),
        chain("start", "fork"),
        chain("fork", "approve", "join", prefix="p"),
        chain("fork", "plain", "join", prefix="q"),
        chain("join", "boom", "end", prefix="r"),
    )


def test_waiting_tasks_and_next_actions() -> None:
    definition = _model()
    state = begin(definition).state
    waits = view.waiting_tasks(definition, state)
    assert [(w.task_id, w.task_name, w.task_type, w.kind, w.assigned_to) for w in waits] == [
        ("approve", "Approve", "UserTask", "userTask", "managers"),
        ("plain", "", "UserTask", "userTask", "ops"),
    ]
    assert waits[0].waiting_since == NOW
    assert waits[0].user_actions == [
        {"action": "approve", "label": "Approve"},
        {"action": "reject", "label": "Say no"},
    ]
    assert waits[0].token_id != waits[1].token_id
    assert view.next_actions(definition, state) == [
        {"action": "approve", "label": "Approve", "userAction": True, "taskId": "approve"},
        {"action": "reject", "label": "Say no", "userAction": True, "taskId": "approve"},
    ]
    assert view.current_activity(state) == "approve"


def test_error_state_offers_retry_skip_cancel_and_names_the_failed_task() -> None:
    definition = _model()
    state = begin(definition).state
    state = engine.complete_task(
        definition, state, now=NOW, ids=Ids(), task_id="approve", action="approve"
    ).state
    state = engine.complete_task(definition, state, now=NOW, ids=Ids()).state
    assert state.status is InstanceStatus.ERROR
    assert view.current_activity(state) == "boom"
    assert [a["action"] for a in view.next_actions(definition, state)] == ["retry", "skip", "cancel"]
    assert view.waiting_tasks(definition, state) == []
    done = engine.skip_failed(
        definition, state, additional_data={}, comment=None, actor=None, now=NOW, ids=Ids()
    )
    assert view.current_activity(done.state) is None
    assert view.next_actions(definition, done.state) == []
