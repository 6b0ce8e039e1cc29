"""When a timer catch event is due: ISO-8601 durations and date-times, from `now`.

`timeDuration` (PT30S, P1DT2H, P1M: years and months by the calendar) counts from `now`;
`timeDate` is an absolute date-time (no offset means UTC). A `${...}` expression is evaluated
first and must give such a text. Repeating cycles are not run yet.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import scripting
from domain.model import EventDefinition

_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?"
)
_EXPRESSION = re.compile(r"\$\{(.*)\}", re.DOTALL)


class TimerProblem(ValueError):
    """The timer's expression cannot give a due time."""


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def after_duration(now: datetime, text: str) -> datetime:
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise TimerProblem(f"'{text}' is not an ISO-8601 duration such as PT5M or P1DT2H.")
    try:
        return _shifted(now, {k: v for k, v in match.groupdict().items() if v is not None})
    except (OverflowError, ValueError):
        # Python's dates end at year 9999; a duration past that is a modelling error, not a crash.
        raise TimerProblem(f"'{text}' lies beyond the latest date a timer can wait for.") from None


def _shifted(now: datetime, part: dict[str, str]) -> datetime:
    moment = _add_months(now, int(part.get("years", 0)) * 12 + int(part.get("months", 0)))
    return moment + timedelta(
        weeks=int(part.get("weeks", 0)),
        days=int(part.get("days", 0)),
        hours=int(part.get("hours", 0)),
        minutes=int(part.get("minutes", 0)),
        seconds=float(part.get("seconds", "0").replace(",", ".")),
    )


def at_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise TimerProblem(f"'{text}' is not an ISO-8601 date-time such as 2025-01-31T09:00:00Z.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def due_at(event: EventDefinition, now: datetime, variables: dict[str, Any]) -> datetime:
    """Raises TimerProblem, or ScriptError when an expression fails."""
    text = (event.timer_value or "").strip()
    whole = _EXPRESSION.fullmatch(text)
    if whole is not None:
        value = scripting.evaluate_expression(whole.group(1), variables)
        text = str(value).strip() if value is not None else ""
    if event.timer_type == "timeDuration":
        return after_duration(now, text)
    if event.timer_type == "timeDate":
        return at_date(text)
    if event.timer_type == "timeCycle":
        raise TimerProblem(f"Repeating timer cycles ('{text}') are not supported yet.")
    raise TimerProblem("The timer has no timeDuration, timeDate or timeCycle.")
