"""Syntax of timer expressions: ISO-8601 durations, date-times and repeating intervals.

Only the form is checked at deploy time; an expression in `${...}` is resolved at run time
and accepted as it is. timeCycle also accepts a cron expression, as modelers offer it.
"""

from __future__ import annotations

import re
from datetime import datetime

_NUM = r"\d+(?:[.,]\d+)?"
_DURATION = re.compile(
    rf"P(?=\d|T\d)(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
    rf"(?:T(?=\d)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)
_REPEAT = re.compile(r"R(\d*)")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?/,#LW-]+")
_EXPRESSION = re.compile(r"[$#]\{.*\}", re.DOTALL)


def is_expression(value: str) -> bool:
    return _EXPRESSION.fullmatch(value) is not None


def is_duration(value: str) -> bool:
    return _DURATION.fullmatch(value) is not None


def is_date_time(value: str) -> bool:
    if len(value) < 10 or not value[:4].isdigit():
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


def _is_interval(value: str) -> bool:
    start, sep, end = value.partition("/")
    if not sep:
        return is_duration(value)
    if is_duration(start):
        return is_date_time(end)
    return is_date_time(start) and (is_duration(end) or is_date_time(end))


def is_cycle(value: str) -> bool:
    repeat, sep, rest = value.partition("/")
    if sep and _REPEAT.fullmatch(repeat):
        return _is_interval(rest)
    fields = value.split()
    return 5 <= len(fields) <= 7 and all(_CRON_FIELD.fullmatch(f) for f in fields)


_CHECKS = {"timeDuration": is_duration, "timeDate": is_date_time, "timeCycle": is_cycle}
_EXAMPLES = {
    "timeDuration": "an ISO-8601 duration such as PT5M or P1DT2H",
    "timeDate": "an ISO-8601 date-time such as 2025-01-31T09:00:00Z",
    "timeCycle": "an ISO-8601 repeating interval such as R3/PT10M, or a cron expression",
}


def timer_problem(timer_type: str | None, value: str | None) -> str | None:
    """Why a timer definition is unusable, or None when its syntax is fine."""
    if timer_type is None:
        return "has a timer without timeDuration, timeDate or timeCycle."
    text = (value or "").strip()
    if not text:
        return f"has an empty {timer_type}."
    if is_expression(text):
        return None
    check = _CHECKS.get(timer_type)
    if check is None or check(text):
        return None
    return f"has {timer_type} '{text}', which is not {_EXAMPLES[timer_type]}."
