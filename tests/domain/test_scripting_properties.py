"""Property tests for the sandbox: whatever text comes in, only our two errors come out, and
JSON variables survive a round trip through a script unchanged."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import BpmnErrorThrown, ScriptError
from domain.scripting import (
    SandboxLimits,
    check_syntax,
    evaluate_condition,
    evaluate_expression,
    render_template,
    run_script,
)

LIMITS = SandboxLimits(time_ms=50)

# Fragments that push generated text deeper into the parser than random characters do.
JS_TOKENS = [
    "x", "y", "context", "return", "throw", "new", "BpmnError", "Error", "(", ")", "{", "}", "[", "]",
    ";", ",", ".", "=", "==", "===", "+", "-", "*", "/", "%", "!", "?", ":", "=>", "&&", "||", "??",
    "'a'", '"b"', "`t${x}`", "1", "0", "1e308", "-1", "null", "undefined", "true", "false", "let",
    "const", "var", "function", "if", "else", "for", "while", "break", "try", "catch", "finally",
    "typeof", "delete", "in", "of", "this", "arguments", "globalThis", "Object", "prototype",
    "__proto__", "constructor", "JSON", "Math", "Symbol", "Proxy", "Reflect", "eval", "async", "await",
    "yield", "class", "extends", "super", "${", "\n", " ", "//", "/*", "*/", "\\", "\u2028", "\x00",
    "})", "}).call(undefined); } }", "); })(); } }",
]

js_like = st.lists(st.sampled_from(JS_TOKENS), max_size=30).map(" ".join)
any_text = st.one_of(st.text(max_size=200), js_like)

EXPECTED = (ScriptError, BpmnErrorThrown)


def _only_expected_errors(call: Any) -> None:
    # anything other than our two errors propagates and fails the test
    with contextlib.suppress(*EXPECTED):
        call()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_arbitrary_text_as_a_script_raises_only_script_errors(source: str) -> None:
    _only_expected_errors(lambda: run_script(source, {"x": 1, "y": "two"}, limits=LIMITS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_arbitrary_text_as_a_condition_or_expression_raises_only_script_errors(source: str) -> None:
    _only_expected_errors(lambda: evaluate_condition(source, {"x": 1}, limits=LIMITS))
    _only_expected_errors(lambda: evaluate_expression(source, {"x": 1}, limits=LIMITS))
    _only_expected_errors(lambda: render_template(source, {"x": 1}, limits=LIMITS))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text, st.sampled_from(["script", "condition", "expression", "template"]))
def test_check_syntax_answers_with_a_sentence_or_none(source: str, kind: str) -> None:
    message = check_syntax(source, kind, limits=LIMITS)
    assert message is None or (isinstance(message, str) and message)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
variable_maps = st.dictionaries(st.text(max_size=12), json_values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(variable_maps)
def test_json_variables_round_trip_through_a_script(variables: dict[str, Any]) -> None:
    outcome = run_script("return context", variables)
    assert outcome.variables == variables
    assert outcome.result == variables


@settings(max_examples=200, deadline=None)
@given(variable_maps)
def test_every_variable_is_reachable_through_context(variables: dict[str, Any]) -> None:
    for name, value in variables.items():
        assert evaluate_expression(f"context[{_js_string(name)}]", variables) == value


def _js_string(text: str) -> str:
    return json.dumps(text)
