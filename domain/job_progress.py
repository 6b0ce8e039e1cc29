"""A service task's job between its attempts, as the token shows it.

While the worker retries a call, the token stays blocked on its job; `note_job_attempt`
records on it how far the job got (attempt n of m, next try at T, last error) so that
`GetProcessInstanceStateCommand` can say why the token waits.
The attempt group (bumped by RetryFailedTask, part of the idempotency key) has its own field
on `blockedOn`, so noting attempts never disturbs it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.state import HistoryEvent, InstanceState, Token, TokenState, copy_state
from domain.tokens import JOB, kind_of, touch
from domain.transition import Transition

SERVICE_TASK_TYPE = "ServiceTask"


def waiting_token(state: InstanceState, token_id: int, node_id: str) -> Token | None:
    """The token, if it is still waiting on a service job at `node_id`."""
    for token in state.tokens:
        if token.id == token_id:
            waiting = token.state is TokenState.ACTIVE and kind_of(token) == JOB and token.current_node_id == node_id
            return token if waiting else None
    return None


def waits_on_job(state: InstanceState, token_id: int, node_id: str) -> bool:
    return waiting_token(state, token_id, node_id) is not None


def _token(state: InstanceState, token_id: int, node_id: str) -> Token:
    token = waiting_token(state, token_id, node_id)
    if token is None:
        raise ValueError(f"token {token_id} is not waiting on a service job at '{node_id}'")
    return token


def note_job_attempt(
    state: InstanceState,
    *,
    token_id: int,
    node_id: str,
    attempt: int,
    max_attempts: int,
    next_attempt_at: datetime,
    last_error: str,
    now: datetime,
) -> Transition:
    """Attempt `attempt` of `max_attempts` failed and another is due at `next_attempt_at`."""
    state = copy_state(state)
    token = _token(state, token_id, node_id)
    assert token.blocked_on is not None  # waiting_token checked its kind
    token.blocked_on = msgspec.structs.replace(
        token.blocked_on,
        job_attempt=attempt,
        job_max_attempts=max_attempts,
        next_attempt_at=next_attempt_at,
        last_error=last_error,
    )
    touch(token, now)
    state.updated_at = now
    state.history_seq += 1
    event = HistoryEvent(
        seq=state.history_seq,
        event_type="ServiceCallRetryScheduled",
        at=now,
        node_id=token.current_node_id,
        node_name=token.current_node_name,
        node_type=SERVICE_TASK_TYPE,
        token_id=token.id,
        data={
            "attempt": attempt,
            "maxAttempts": max_attempts,
            "nextAttemptAt": next_attempt_at.isoformat(),
            "error": last_error,
        },
    )
    return Transition(state=state, events=[event], effects=[])
