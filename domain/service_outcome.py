"""What a service task's HTTP call came to, and what flowcore does about it.

The worker performs the call and reports a `CallResult`; `classify` turns it into one of four
outcomes (SEMANTICS.md "Failure, retry, skip"):

- `Succeeded`: a 2xx answer; its body is the task's result;
- `Retryable`: a timeout, a connection error, a 5xx or a 429; worth another attempt;
- `Permanent`: any other answer (a 4xx other than 429, an unexpected 1xx/3xx) or a call that
  cannot be made as configured (unknown connector, bad URL); retrying cannot help;
- `BpmnErrorRaised`: the answer names a BPMN error code in the configured JSON field, whatever
  its status; an error boundary event on the task may catch it.

`plan` then decides, given the attempt number, whether the task completes, waits for another
attempt (with a backoff that doubles, jitters and is capped) or fails for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

# Longest piece of a response body kept in an error's details: enough to read, not a dump.
DETAILS_LIMIT = 2000


class CallResult(msgspec.Struct, frozen=True, kw_only=True):
    """The facts of one HTTP call, as the caller observed them."""

    target: str = ""  # "POST http://host/path", for messages (never the query string or headers)
    status: int | None = None  # the HTTP status, when an answer arrived
    body: Any = None  # JSON-decoded when it was JSON, else the text; None when empty
    transport_error: str | None = None  # no answer: timeout, refused, reset (may work later)
    setup_error: str | None = None  # the call could not be made as configured (never will)
    retry_after_ms: int | None = None  # the server's Retry-After, when it sent one
    elapsed_ms: float = 0.0


class Succeeded(msgspec.Struct, frozen=True, kw_only=True):
    result: Any


class Retryable(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    details: str = ""
    retry_after_ms: int | None = None


class Permanent(msgspec.Struct, frozen=True, kw_only=True):
    message: str
    details: str = ""


class BpmnErrorRaised(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


Outcome = Succeeded | Retryable | Permanent | BpmnErrorRaised


def _details(body: Any) -> str:
    if body is None:
        return ""
    text = body if isinstance(body, str) else msgspec.json.encode(body).decode()
    return text if len(text) <= DETAILS_LIMIT else text[:DETAILS_LIMIT] + "…"


def _bpmn_error(body: Any, field: str | None) -> BpmnErrorRaised | None:
    if not field or not isinstance(body, dict):
        return None
    code = body.get(field)
    if not isinstance(code, str) or not code.strip():
        return None
    message = body.get("errorMessage") or body.get("message")
    return BpmnErrorRaised(code=code.strip(), message=str(message) if message else code.strip())


def classify(result: CallResult, *, bpmn_error_field: str | None) -> Outcome:
    if result.setup_error is not None:
        return Permanent(message=result.setup_error)
    if result.transport_error is not None or result.status is None:
        return Retryable(message=result.transport_error or f"No answer from {result.target}")
    bpmn = _bpmn_error(result.body, bpmn_error_field)
    if bpmn is not None:
        return bpmn
    status = result.status
    if 200 <= status < 300:
        return Succeeded(result=result.body)
    message = f"HTTP {status} from {result.target}"
    if status >= 500 or status == 429:
        return Retryable(message=message, details=_details(result.body), retry_after_ms=result.retry_after_ms)
    return Permanent(message=message, details=_details(result.body))


def backoff_ms(initial_ms: int, attempt: int, *, jitter: float, cap_ms: int) -> int:
    """The wait after failed attempt `attempt` (1-based): initial · 2^(attempt-1), capped, then
    spread over its upper half by `jitter` in [0, 1) so that callers failing together do not
    retry together."""
    if initial_ms <= 0:
        return 0
    doubled = initial_ms * 2 ** min(max(attempt - 1, 0), 30)
    ceiling = min(doubled, cap_ms)
    jitter = min(max(jitter, 0.0), 1.0)
    return int(ceiling / 2 + ceiling / 2 * jitter)


class Complete(msgspec.Struct, frozen=True, kw_only=True):
    """The task completes with this result."""

    result: Any


class TryAgain(msgspec.Struct, frozen=True, kw_only=True):
    """Another attempt is due at `at`; `error` says why this one did not do."""

    at: datetime
    error: str


class GiveUp(msgspec.Struct, frozen=True, kw_only=True):
    """The task fails: with `error_code`, as a BPMN error an error boundary may catch."""

    message: str
    details: str = ""
    error_code: str | None = None


Plan = Complete | TryAgain | GiveUp


def plan(
    outcome: Outcome,
    *,
    attempt: int,
    max_attempts: int,
    initial_backoff_ms: int,
    backoff_cap_ms: int,
    jitter: float,
    now: datetime,
) -> Plan:
    """What to do after attempt `attempt` of `max_attempts` ended with `outcome`."""
    match outcome:
        case Succeeded(result=result):
            return Complete(result=result)
        case BpmnErrorRaised(code=code, message=message):
            return GiveUp(message=message, error_code=code)
        case Permanent(message=message, details=details):
            return GiveUp(message=message, details=details)
        case Retryable(message=message, details=details, retry_after_ms=retry_after):
            if attempt >= max_attempts:
                made = min(attempt, max_attempts)  # a claim past the last is only the lost one's echo
                spent = f"{message} (gave up after {made} attempt{'s' if made != 1 else ''})"
                return GiveUp(message=spent, details=details)
            wait = backoff_ms(initial_backoff_ms, attempt, jitter=jitter, cap_ms=backoff_cap_ms)
            if retry_after is not None:
                wait = max(wait, min(retry_after, backoff_cap_ms))
            return TryAgain(at=now + timedelta(milliseconds=wait), error=message)
    raise TypeError(f"unknown outcome {outcome!r}")  # pragma: no cover - the match is exhaustive
