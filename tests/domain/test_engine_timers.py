"""Timer catch events: due times from durations, dates and expressions; firing; cancelling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import engine
from domain.errors import InvalidStateForCommand, TaskNotWaiting
from domain.model import Definition, EventDefinition, EventKind
from domain.state import InstanceStatus, NodeStatus
from domain.timers import TimerProblem, after_duration, due_at
from domain.transition import CancelJobs, ScheduleTimer
from tests.domain.engine_support import NOW, Ids, begin, chain, end, gateway, model, script, start, token_at


def _timer(kind: str, value: str) -> str:
    return (
        f'<intermediateCatchEvent id="wait"><timerEventDefinition><{kind}>{value}</{kind}>'
        "</timerEventDefinition></intermediateCatchEvent>"
    )


def _timed(kind: str = "timeDuration", value: str = "PT1M30S") -> Definition:
    return model(
        start(),
        _timer(kind, value),
        script("after", "after = true;"),
        end(),
        chain("start", "wait", "after", "end"),
    )


def test_timer_waits_and_schedules_then_fires_when_due() -> None:
    definition = _timed()
    started = begin(definition)
    state = started.state
    due = NOW + timedelta(seconds=90)
    assert state.status is InstanceStatus.WAITING
    token = token_at(state, "wait")
    assert token.status_current_node is NodeStatus.WAITING_TIMER_EVENT
    assert (
        token.blocked_on is not None and token.blocked_on.kind == "timer" and token.blocked_on.due_at == due
    )
    assert started.effects == [ScheduleTimer(token_id=token.id, node_id="wait", due_at=due)]
    with pytest.raises(InvalidStateForCommand, match="is due at"):
        engine.fire_timer(definition, state, token_id=token.id, now=NOW, ids=Ids())
    fired = engine.fire_timer(definition, state, token_id=token.id, now=due, ids=Ids())
    assert fired.state.status is InstanceStatus.COMPLETED and fired.state.variables["after"] is True
    assert fired.events[0].event_type == "TimerFired"
    with pytest.raises(TaskNotWaiting):
        engine.fire_timer(definition, started.state, token_id=99, now=due, ids=Ids())


def test_timer_dates_and_expressions() -> None:
    at = begin(_timed("timeDate", "2024-06-01T08:00:00Z")).state
    assert token_at(at, "wait").blocked_on.due_at == datetime(2024, 6, 1, 8, tzinfo=UTC)  # type: ignore[union-attr]
    expr = begin(_timed("timeDuration", "${delay}"), {"delay": "PT5S"}).state
    assert token_at(expr, "wait").blocked_on.due_at == NOW + timedelta(seconds=5)  # type: ignore[union-attr]


def test_calendar_durations() -> None:
    jan31 = datetime(2024, 1, 31, tzinfo=UTC)
    assert after_duration(jan31, "P1M") == datetime(2024, 2, 29, tzinfo=UTC)
    assert after_duration(jan31, "P1Y2DT3H") == datetime(2025, 2, 2, 3, tzinfo=UTC)
    assert after_duration(jan31, "PT0.5S") == jan31 + timedelta(milliseconds=500)
    with pytest.raises(TimerProblem):
        after_duration(jan31, "PT")
    with pytest.raises(TimerProblem, match="not supported yet"):
        due_at(EventDefinition(EventKind.TIMER, timer_type="timeCycle", timer_value="R3/PT1S"), jan31, {})


def test_unusable_timer_fails_the_instance() -> None:
    state = begin(_timed("timeCycle", "R4/PT1S")).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None
    assert (
        state.error.error_message == "Timer 'wait': Repeating timer cycles ('R4/PT1S') are not supported yet."
    )


@pytest.mark.parametrize("duration", ["P9999Y", "PT999999999999H", "P99999999999999999999D"])
def test_a_duration_past_the_last_date_fails_the_instance_not_the_command(duration: str) -> None:
    state = begin(_timed("timeDuration", duration)).state
    assert state.status is InstanceStatus.ERROR
    assert state.error is not None and "beyond the latest date" in state.error.error_message


def test_terminate_and_cancel_cancel_the_timer_job() -> None:
    definition = model(
        start(),
        gateway("parallel", "fork"),
        _timer("timeDuration", "PT1H"),
        end("stop", "terminate"),
        end(),
        chain("start", "fork"),
        chain("fork", "wait", "end", prefix="p"),
        chain("fork", "stop", prefix="q"),
    )
    terminated = begin(definition)
    waiting_token = next(t for t in terminated.state.tokens if t.current_node_id == "wait")
    assert terminated.state.outcome == "terminated"
    assert CancelJobs(token_id=waiting_token.id, node_id="wait") in terminated.effects
    waiting = begin(_timed()).state
    cancelled = engine.cancel(_timed(), waiting, reason=None, actor=None, now=NOW, ids=Ids())
    assert cancelled.effects == [CancelJobs(token_id=token_at(waiting, "wait").id, node_id="wait")]
