"""A service job's attempts shown on its token, and the attempt group kept for RetryFailedTask."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import engine, job_progress
from domain.state import InstanceStatus
from domain.transition import CallService
from tests.domain.engine_support import LATER, NOW, Ids, begin, chain, end, model, service, user

DEFINITION = model(
    service("call", props={"Endpoint": "https://x.test/run", "Retries": "2"}, name="Call API"),
    user("review"),
    "<startEvent id='start'/>",
    end(),
    chain("start", "call", "review", "end"),
)


def _started() -> tuple[int, engine.Transition]:
    started = begin(DEFINITION)
    [effect] = started.effects
    assert isinstance(effect, CallService)
    return effect.token_id, started


def test_note_shows_attempt_next_try_and_last_error_on_the_token() -> None:
    token_id, started = _started()
    next_try = LATER + timedelta(seconds=4)
    noted = job_progress.note_job_attempt(
        started.state, token_id=token_id, node_id="call", attempt=2, max_attempts=3,
        next_attempt_at=next_try, last_error="HTTP 503 from POST https://x.test/run", now=LATER,
    )
    [token] = [t for t in noted.state.tokens if t.id == token_id]
    blocked = token.blocked_on
    assert blocked is not None
    assert (blocked.kind, blocked.job_attempt, blocked.job_max_attempts) == ("job", 2, 3)
    assert (blocked.next_attempt_at, blocked.last_error) == (next_try, "HTTP 503 from POST https://x.test/run")
    assert token.date_updated == LATER
    [before] = [t for t in started.state.tokens if t.id == token_id]
    assert token.version == before.version + 1
    assert before.blocked_on is not None and before.blocked_on.last_error is None  # the input is untouched
    assert noted.state.status is InstanceStatus.RUNNING and noted.effects == []
    [event] = noted.events
    assert event.seq == started.state.history_seq + 1 == noted.state.history_seq
    assert (event.event_type, event.node_id, event.token_id) == ("ServiceCallRetryScheduled", "call", token_id)
    assert event.data == {
        "attempt": 2, "maxAttempts": 3, "nextAttemptAt": next_try.isoformat(),
        "error": "HTTP 503 from POST https://x.test/run",
    }


def test_only_a_token_waiting_on_a_service_job_at_that_node_is_noted() -> None:
    token_id, started = _started()
    assert job_progress.waits_on_job(started.state, token_id, "call")
    assert not job_progress.waits_on_job(started.state, token_id, "review")
    assert not job_progress.waits_on_job(started.state, token_id + 99, "call")
    done = engine.complete_task(DEFINITION, started.state, now=NOW, ids=Ids(), token_id=token_id, result={})
    assert not job_progress.waits_on_job(done.state, token_id, "call")  # it moved on to the user task
    with pytest.raises(ValueError, match="not waiting on a service job"):
        job_progress.note_job_attempt(
            done.state, token_id=token_id, node_id="call", attempt=1, max_attempts=3,
            next_attempt_at=LATER, last_error="x", now=LATER,
        )


def test_a_retry_after_noted_attempts_still_starts_the_next_attempt_group() -> None:
    """Noting attempts must not disturb the attempt group, or two retries could share an idempotency key."""
    token_id, started = _started()
    state = started.state
    groups = []
    for _ in range(3):
        state = job_progress.note_job_attempt(
            state, token_id=token_id, node_id="call", attempt=2, max_attempts=3,
            next_attempt_at=LATER, last_error="HTTP 503", now=LATER,
        ).state
        [shown] = [t.blocked_on.job_attempt for t in state.tokens if t.id == token_id and t.blocked_on]
        assert shown == 2  # what the token shows meanwhile: the attempt
        failed = engine.fail_task(DEFINITION, state, token_id=token_id, message="HTTP 503", now=LATER, ids=Ids())
        assert failed.state.status is InstanceStatus.ERROR
        retried = engine.retry_failed(
            DEFINITION, failed.state, updated_variables=None, comment=None, actor=None, now=LATER, ids=Ids()
        )
        [effect] = retried.effects
        assert isinstance(effect, CallService)
        groups.append(effect.attempt_group)
        state = retried.state
    assert groups == [2, 3, 4]
