"""Per-group summary of the betsy conformance run, printed after the test session."""

from __future__ import annotations

from collections import Counter

import pytest

_counts: dict[str, Counter[str]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    group = props.get("betsy_group")
    if group is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _counts.setdefault(str(group), Counter())[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _counts:
        return
    write = terminalreporter.write_line
    terminalreporter.section("betsy conformance")
    write(f"{'group':<12} | {'passed':>6} | {'failed':>6} | {'skipped':>7}")
    totals: Counter[str] = Counter()
    for group in sorted(_counts):
        c = _counts[group]
        totals.update(c)
        write(f"{group:<12} | {c['passed']:>6} | {c['failed']:>6} | {c['skipped']:>7}")
    write(f"{totals['passed']} passed, {totals['failed']} failed ({totals['skipped']} skipped)")
