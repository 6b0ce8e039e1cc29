"""Classifying a service call's result, the backoff between attempts, and the plan after each attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.service_outcome import (
    DETAILS_LIMIT,
    BpmnErrorRaised,
    CallResult,
    Complete,
    GiveUp,
    Permanent,
    Retryable,
    Succeeded,
    TryAgain,
    backoff_ms,
    classify,
    plan,
)
from tests.domain.engine_support import NOW

TARGET = "POST http://svc.test/score"


def answer(status: int, body: object = None, **more: object) -> CallResult:
    return CallResult(target=TARGET, status=status, body=body, **more)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_succeeds_with_the_body(status: int) -> None:
    assert classify(answer(status, {"score": 7}), bpmn_error_field="bpmnErrorCode") == Succeeded(result={"score": 7})


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_429_are_retryable_with_the_body_as_details(status: int) -> None:
    outcome = classify(answer(status, {"why": "busy"}, retry_after_ms=2000), bpmn_error_field="bpmnErrorCode")
    assert outcome == Retryable(
        message=f"HTTP {status} from {TARGET}", details='{"why":"busy"}', retry_after_ms=2000
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 301, 100])
def test_other_answers_are_permanent(status: int) -> None:
    outcome = classify(answer(status, "nope"), bpmn_error_field="bpmnErrorCode")
    assert outcome == Permanent(message=f"HTTP {status} from {TARGET}", details="nope")


def test_transport_errors_are_retryable_and_setup_errors_permanent() -> None:
    timeout = CallResult(target=TARGET, transport_error="Timed out after 10 ms")
    assert classify(timeout, bpmn_error_field=None) == Retryable(message="Timed out after 10 ms")
    unknown = CallResult(target=TARGET, setup_error="Connector 'x' is not configured")
    assert classify(unknown, bpmn_error_field=None) == Permanent(message="Connector 'x' is not configured")


@pytest.mark.parametrize("status", [200, 422, 500])
def test_a_bpmn_error_code_in_the_configured_field_wins_whatever_the_status(status: int) -> None:
    body = {"code": "CREDIT_DENIED", "errorMessage": "score too low"}
    assert classify(answer(status, body), bpmn_error_field="code") == BpmnErrorRaised(
        code="CREDIT_DENIED", message="score too low"
    )
    # another field name, or an empty code, is just data
    assert isinstance(classify(answer(200, body), bpmn_error_field="bpmnErrorCode"), Succeeded)
    assert isinstance(classify(answer(200, {"code": " "}), bpmn_error_field="code"), Succeeded)
    assert classify(answer(200, {"code": "X"}), bpmn_error_field="code") == BpmnErrorRaised(code="X", message="X")


def test_long_bodies_are_cut_in_the_details() -> None:
    outcome = classify(answer(500, "x" * (DETAILS_LIMIT * 2)), bpmn_error_field=None)
    assert isinstance(outcome, Retryable)
    assert len(outcome.details) == DETAILS_LIMIT + 1 and outcome.details.endswith("…")


def test_backoff_doubles_and_is_capped() -> None:
    top = [backoff_ms(1000, attempt, jitter=1.0, cap_ms=10_000) for attempt in range(1, 7)]
    assert top == [1000, 2000, 4000, 8000, 10_000, 10_000]
    low = [backoff_ms(1000, attempt, jitter=0.0, cap_ms=10_000) for attempt in range(1, 4)]
    assert low == [500, 1000, 2000]
    assert backoff_ms(0, 3, jitter=0.5, cap_ms=10_000) == 0


@given(
    initial=st.integers(1, 100_000),
    attempt=st.integers(1, 200),
    jitter=st.floats(0, 1, exclude_max=True),
    cap=st.integers(1, 10_000_000),
)
def test_backoff_stays_in_the_upper_half_of_its_capped_ceiling(
    initial: int, attempt: int, jitter: float, cap: int
) -> None:
    ceiling = min(initial * 2 ** (attempt - 1), cap)
    assert ceiling // 2 <= backoff_ms(initial, attempt, jitter=jitter, cap_ms=cap) <= ceiling


def _plan(outcome: object, attempt: int, max_attempts: int = 4, **more: int) -> object:
    return plan(
        outcome,  # type: ignore[arg-type]
        attempt=attempt,
        max_attempts=max_attempts,
        initial_backoff_ms=more.get("initial", 1000),
        backoff_cap_ms=more.get("cap", 60_000),
        jitter=1.0,
        now=NOW,
    )


def test_plan_completes_on_success_and_gives_up_on_permanent_and_bpmn_errors() -> None:
    assert _plan(Succeeded(result=1), 1) == Complete(result=1)
    assert _plan(Permanent(message="HTTP 404", details="d"), 1) == GiveUp(message="HTTP 404", details="d")
    assert _plan(BpmnErrorRaised(code="C", message="m"), 1) == GiveUp(message="m", error_code="C")


def test_plan_retries_with_backoff_until_the_attempts_are_spent() -> None:
    failing = Retryable(message="HTTP 503", details="down")
    assert _plan(failing, 1) == TryAgain(at=NOW + timedelta(milliseconds=1000), error="HTTP 503")
    assert _plan(failing, 3) == TryAgain(at=NOW + timedelta(milliseconds=4000), error="HTTP 503")
    assert _plan(failing, 4) == GiveUp(message="HTTP 503 (gave up after 4 attempts)", details="down")
    assert _plan(failing, 1, max_attempts=1) == GiveUp(message="HTTP 503 (gave up after 1 attempt)", details="down")
    # a claim beyond the last attempt (its worker died) reports the attempts actually made
    assert _plan(failing, 5) == GiveUp(message="HTTP 503 (gave up after 4 attempts)", details="down")


def test_plan_honours_retry_after_up_to_the_cap() -> None:
    assert _plan(Retryable(message="429", retry_after_ms=30_000), 1) == TryAgain(
        at=NOW + timedelta(seconds=30), error="429"
    )
    assert _plan(Retryable(message="429", retry_after_ms=10**9), 1, cap=60_000) == TryAgain(
        at=NOW + timedelta(seconds=60), error="429"
    )
