"""Conditions, expressions, templates and script tasks in JavaScript, run in the sandbox.

Variables are visible as globals and as `context` (names that are not JS identifiers only as
`context["a-b"]`). A script's assignments to existing variables, to `context.x` and to new
names it never declares all end up in the returned variable map; `let`/`const`/`var` locals do
not. Every failure is a ScriptError, or a BpmnErrorThrown for `throw new BpmnError(code, msg)`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final, NoReturn

import msgspec

from domain.errors import BpmnErrorThrown, ScriptError
from domain.sandbox import (
    BPMN,
    CONDITION,
    DEFAULT_LIMITS,
    ERROR,
    EXPRESSION,
    FALSE,
    NOT_JSON,
    OK,
    SANDBOX,
    SCRIPT,
    TEMPLATE,
    TRUE,
    RealmFailure,
    SandboxLimits,
    SourceProblem,
)

__all__ = [
    "SandboxLimits",
    "ScriptOutcome",
    "check_syntax",
    "evaluate_condition",
    "evaluate_expression",
    "render_template",
    "run_script",
]

_KINDS: Final = {"condition": CONDITION, "expression": EXPRESSION, "script": SCRIPT, "template": TEMPLATE}

_encoder: Final = msgspec.json.Encoder()


class ScriptOutcome(msgspec.Struct, frozen=True):
    """A frozen Struct rather than a frozen dataclass: built once per script call, and a frozen
    dataclass's __init__ (object.__setattr__ per field) costs several times more."""

    variables: dict[str, Any] = msgspec.field(default_factory=dict)  # the full map after the script
    result: Any | None = None  # what the script returned; None when it returned nothing


def check_syntax(source: str, kind: str, *, limits: SandboxLimits | None = None) -> str | None:
    """A sentence describing why `source` does not compile as `kind`, or None when it does.

    `kind` is "condition", "expression", "script" or "template". Compiling also fills the
    cache, so deploy-time checks make the first evaluation cheaper.
    """
    mode = _KINDS.get(kind)
    if mode is None:
        raise ValueError(f"unknown source kind {kind!r}")
    limits = limits or DEFAULT_LIMITS
    try:
        if mode == TEMPLATE:
            sources = [_clean_expression(expression) for _, _, expression in _placeholders(source)]
        else:
            sources = [source if mode == SCRIPT else _unwrap(source)]
        for text in sources:
            _check_length(text, limits)
            SANDBOX.compile(mode, text, limits)
    except ScriptError as exc:
        return exc.message
    except SourceProblem as problem:
        return _describe(problem)[0]
    except RealmFailure as exc:
        return exc.message
    return None


def evaluate_condition(
    expression: str, variables: Mapping[str, Any], *, limits: SandboxLimits | None = None
) -> bool:
    """JS truthiness of a condition, `${…}`-wrapped or bare."""
    limits = limits or DEFAULT_LIMITS
    answer = _evaluate(CONDITION, _unwrap(expression), _encode(variables), limits)
    if answer == TRUE:
        return True
    if answer == FALSE:
        return False
    _raise_failure(answer)


def evaluate_expression(
    expression: str, variables: Mapping[str, Any], *, limits: SandboxLimits | None = None
) -> Any:
    """The JSON value of an expression (`undefined` becomes None)."""
    limits = limits or DEFAULT_LIMITS
    answer = _evaluate(EXPRESSION, _unwrap(expression), _encode(variables), limits)
    if answer[:1] != OK:
        _raise_failure(answer)
    return _decode(answer)


def render_template(
    template: str, variables: Mapping[str, Any], *, limits: SandboxLimits | None = None
) -> str:
    """Replaces every `${expr}` in `template` by the expression's value.

    Strings appear as they are, objects and arrays as JSON, `undefined` as nothing, anything
    else as JavaScript's String() gives it (so a URL gets `42`, a JSON payload gets `null`).
    """
    limits = limits or DEFAULT_LIMITS
    parts = _placeholders(template)
    if not parts:
        return template
    json_in = _encode(variables)
    pieces: list[str] = []
    done = 0
    for start, end, expression in parts:
        answer = _evaluate(TEMPLATE, _clean_expression(expression), json_in, limits)
        if answer[:1] != OK:
            _raise_failure(answer)
        value = _decode(answer)
        pieces.append(template[done:start])
        pieces.append(value if isinstance(value, str) else "")
        done = end
    pieces.append(template[done:])
    return "".join(pieces)


def run_script(
    source: str, variables: Mapping[str, Any], *, limits: SandboxLimits | None = None
) -> ScriptOutcome:
    """Runs a script task's code and returns the variable map after it plus its return value."""
    limits = limits or DEFAULT_LIMITS
    json_in = _encode(variables)
    answer = _evaluate(SCRIPT, source, json_in, limits)
    if answer[:1] != OK:
        _raise_failure(answer)
    _check_size(answer, json_in, limits)
    decoded = _decode(answer)
    if not (isinstance(decoded, list) and len(decoded) == 2 and isinstance(decoded[0], dict)):
        raise ScriptError("Script left a variable map that is not a JSON object")
    return ScriptOutcome(variables=decoded[0], result=decoded[1])


def _evaluate(mode: str, source: str, json_in: str, limits: SandboxLimits) -> str:
    _check_length(source, limits)
    try:
        return SANDBOX.evaluate(mode, source, json_in, limits)
    except SourceProblem as problem:
        raise _syntax_error(problem) from None
    except RealmFailure as exc:
        raise ScriptError(exc.message) from None


def _check_length(source: str, limits: SandboxLimits) -> None:
    if len(source) > limits.max_source_chars:
        raise ScriptError(
            f"Script is {len(source)} characters long; the limit is {limits.max_source_chars}"
        )


def _syntax_error(problem: SourceProblem) -> ScriptError:
    text, details = _describe(problem)
    return ScriptError(f"Script does not compile: {text}", details=details)


def _describe(problem: SourceProblem) -> tuple[str, dict[str, Any] | None]:
    """The problem as a sentence with its place in the user's source, plus that place."""
    if problem.line is None:
        return problem.message, None
    if problem.column is None:
        return f"{problem.message} (at the end of line {problem.line})", {"line": problem.line}
    where = f"at line {problem.line}, column {problem.column}"
    return f"{problem.message} ({where})", {"line": problem.line, "column": problem.column}


def _encode(variables: Mapping[str, Any]) -> str:
    data = variables if isinstance(variables, dict) else dict(variables)
    try:
        return _encoder.encode(data).decode()
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
        raise ScriptError(f"Variables cannot be handed to a script: {exc}") from None


def _decode(answer: str) -> Any:
    try:
        value = msgspec.json.decode(answer[1:])
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        raise ScriptError(f"Script result cannot be read back: {exc}") from None
    if _LONG_DIGITS.search(answer):
        value = _as_js_numbers(value)
    return value


# Every JS number is a double: one beyond 2**53 prints as its shortest digits padded with zeros,
# which read back as a Python int is a different number. Such ints go back to being floats.
_LONG_DIGITS: Final = re.compile(r"\d{16}")
_EXACT: Final = 2**53


def _as_js_numbers(value: Any) -> Any:
    # in place and iterative: the value was just decoded, and may be nested as deep as JS allows
    holder = [value]
    pending: list[tuple[Any, Any]] = [(holder, 0)]
    while pending:
        container, key = pending.pop()
        item = container[key]
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if abs(item) > _EXACT:
                container[key] = float(item)
        elif isinstance(item, list):
            pending.extend((item, index) for index in range(len(item)))
        elif isinstance(item, dict):
            pending.extend((item, name) for name in item)
    return holder[0]


def _check_size(answer: str, json_in: str, limits: SandboxLimits) -> None:
    allowed = limits.max_result_bytes + len(json_in)
    # characters never outnumber UTF-8 bytes, so encode only when it could matter
    if len(answer) > allowed or (
        len(answer) * 4 > allowed and len(answer.encode("utf-8", "surrogatepass")) > allowed
    ):
        raise ScriptError(
            f"Script result exceeds the size limit of {limits.max_result_bytes} bytes beyond its input"
        )


def _raise_failure(answer: str) -> NoReturn:
    tag, message = answer[:1], answer[1:]
    if tag == BPMN:
        code, text = _decode(answer)
        raise BpmnErrorThrown(str(code), str(text))
    if tag == NOT_JSON:
        raise ScriptError(f"Script result is not JSON-serialisable ({message})")
    if tag == ERROR:
        raise ScriptError(message)
    raise ScriptError(f"Script sandbox returned an unexpected answer {tag!r}")


_WRAPPED: Final = re.compile(r"\s*\$\{(.*)\}\s*", re.DOTALL)


@functools.lru_cache(maxsize=2048)
def _unwrap(expression: str) -> str:
    """Strips one `${ … }` around the whole text; a text with several placeholders stays as is."""
    expression = _clean_expression(expression)
    if _WRAPPED.fullmatch(expression):
        try:
            parts = _placeholders(expression)
        except ScriptError:
            parts = []
        if len(parts) == 1 and parts[0][0] == 0 and parts[0][1] == len(expression):
            return _clean_expression(parts[0][2])
    return expression


def _clean_expression(expression: str) -> str:
    # modelers often end a condition with `;`, which is not part of an expression
    text = expression.strip()
    return text[:-1].rstrip() if text.endswith(";") else text


def _placeholders(text: str) -> list[tuple[int, int, str]]:
    """Each `${expr}` in `text` as (start, end, expr); braces inside quotes do not count."""
    found: list[tuple[int, int, str]] = []
    position = 0
    while (start := text.find("${", position)) >= 0:
        index, depth, quote = start + 2, 0, ""
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in "'\"`":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                if depth == 0:
                    break
                depth -= 1
            index += 1
        else:
            raise ScriptError(f"Template has an unterminated '${{' at character {start + 1}")
        found.append((start, index + 1, text[start + 2 : index]))
        position = index + 1
    return found
