"""betsy BPMN conformance: every in-scope test case must produce its expected trace (as a multiset)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conformance.betsy_harness import (
    Case,
    cases,
    comparable,
    out_of_scope,
    read_model,
    rewrite,
    run_case,
)

CASES = list(cases())


@pytest.mark.parametrize("case", CASES, ids=[c.ident for c in CASES])
def test_betsy_case(case: Case, record_property: Callable[[str, object], None]) -> None:
    record_property("betsy_group", case.group)
    root = read_model(case)
    reason = out_of_scope(case, root)
    if reason is not None:
        pytest.skip(reason)
    outcome = run_case(case, rewrite(root))
    assert comparable(outcome.trace, case.expected) == sorted(case.expected), (
        f"trace {sorted(outcome.trace)} != expected {sorted(case.expected)}; "
        f"status={outcome.state.status if outcome.state else None} "
        f"error={outcome.state.error.error_message if outcome.state and outcome.state.error else None}"
    )
