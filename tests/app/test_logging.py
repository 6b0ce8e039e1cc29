from __future__ import annotations

import logging

from app.logging import FORMAT, LineFormatter, RequestIdFilter


def _record(created: float, message: str) -> logging.LogRecord:
    record = logging.LogRecord("flowcore.access", logging.INFO, __file__, 1, message, (), None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    RequestIdFilter().filter(record)
    return record


def test_lines_read_exactly_as_the_standard_formatter_writes_them() -> None:
    ours, standard = LineFormatter(), logging.Formatter(FORMAT)
    # within one second, across seconds, back in time, and the same second again after another
    moments = [1_790_000_000.0015, 1_790_000_000.9994, 1_790_000_001.25, 1_789_999_000.5, 1_790_000_001.75]
    for n, created in enumerate(moments):
        record = _record(created, f"line {n}")
        assert ours.format(record) == standard.format(record)
    dated = _record(moments[0], "dated")
    assert ours.formatTime(dated, "%H:%M") == standard.formatTime(dated, "%H:%M")
