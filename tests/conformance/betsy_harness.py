"""The betsy adapter for flowcore: rewrite a test model, run it, produce its trace.

Protocol: tests/conformance/betsy/README.md. The placeholder script bodies become JavaScript
that appends to a `trace` variable (the "log file"); the outcome lines the upstream harness
adds (ERROR_runtime, ERROR_thrownErrorEvent, MARKER_exists, DATA_correct...) are derived from
the final instance state. Whether a test is in scope is decided from the elements its model
contains: anything beyond BPMN coverage levels 1-2 (SEMANTICS.md) is reported as skipped, except
the level-3 element flowcore already runs (timer catch events with a duration or a date, fired
on a virtual clock).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from domain import engine
from domain.definition_loader import load_definition
from domain.errors import DomainError, InvalidDefinition
from domain.model import Definition
from domain.state import InstanceState, InstanceStatus
from domain.view import waiting_tasks

HERE = Path(__file__).parent / "betsy"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
_NS = "{" + BPMN_NS + "}"

# Script placeholders and the JavaScript they stand for in flowcore.
SCRIPTS: dict[str, str] = {
    "CREATE_LOG_FILE": "trace = trace || [];",
    "INCREMENT_INTEGER_VARIABLE": "integerVariable = integerVariable + 1;",
    "INCREMENT_INTEGER_VARIABLE_AND_LOG": (
        'integerVariable = integerVariable + 1; trace.push("INCREMENT_correct");'
    ),
    "CREATE_MARKER_FILE": "marker = true;",
    "SET_STRING_DATA": 'data = "String";',
    "LOG_DATA": "loggedData = data;",
    "THROW_ERROR": 'throw new BpmnError("ERR_CODE", "thrown by the betsy harness");',
    **{f"SCRIPT_task{n}": f'trace.push("SCRIPT_task{n}");' for n in range(1, 6)},
}

# Placeholders whose meaning cannot be reproduced: one instance runs its scripts one after another.
CONCURRENCY_SCRIPTS = {"WAIT_TEN_SECONDS", "CREATE_TIMESTAMP_LOG_1", "CREATE_TIMESTAMP_LOG_2"}

# Elements beyond coverage levels 1-2, by BPMN tag, with the name used in the skip reason.
OUT_OF_SCOPE_TAGS: dict[str, str] = {
    "messageEventDefinition": "message event",
    "signalEventDefinition": "signal event",
    "escalationEventDefinition": "escalation event",
    "compensateEventDefinition": "compensation event",
    "conditionalEventDefinition": "conditional event",
    "linkEventDefinition": "link event",
    "cancelEventDefinition": "cancel event",
    "multiInstanceLoopCharacteristics": "multi-instance activity",
    "standardLoopCharacteristics": "standard loop",
    "complexGateway": "complex gateway",
    "eventBasedGateway": "event-based gateway",
    "transaction": "transaction",
    "adHocSubProcess": "ad-hoc subprocess",
    "receiveTask": "receive task",
    "sendTask": "send task",
}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    file: str
    group: str
    number: int
    input_test: str | None
    integer_variable: int
    parallel_process: bool
    expected: tuple[str, ...]

    @property
    def ident(self) -> str:
        return f"{self.group}/{self.name}#{self.number}" + (f"[{self.input_test}]" if self.input_test else "")


def cases() -> Iterator[Case]:
    data = json.loads((HERE / "expected_traces.json").read_text())
    for test in data["tests"]:
        for case in test["test_cases"]:
            yield Case(
                name=test["name"],
                file=test["file"],
                group=test["group"],
                number=case["number"],
                input_test=case["input_test"],
                integer_variable=case["integerVariable"],
                parallel_process=case["parallel_process"],
                expected=tuple(case["expected_trace"]),
            )


def out_of_scope(case: Case, root: etree._Element) -> str | None:
    """Why the case is outside coverage levels 1-2, judged from the model's elements; None if inside."""
    if case.parallel_process:
        return "needs a second process instance reached by a message or signal (coverage level 3)"
    found: dict[str, str] = {}
    for elem in root.iter():
        tag = elem.tag
        if not isinstance(tag, str) or not tag.startswith(_NS):
            continue
        local = tag[len(_NS) :]
        if local in OUT_OF_SCOPE_TAGS:
            found.setdefault(local, OUT_OF_SCOPE_TAGS[local])
        elif local == "timerEventDefinition" and not _runnable_timer(elem):
            found.setdefault(local, "timer event (boundary, start or cycle)")
        elif local == "subProcess" and elem.get("triggeredByEvent") == "true":
            found.setdefault(local, "event subprocess")
        elif elem.get("isForCompensation") == "true":
            found.setdefault("isForCompensation", "compensation handler")
        elif local == "script" and (elem.text or "").strip() in CONCURRENCY_SCRIPTS:
            found.setdefault(
                local,
                f"script placeholder {(elem.text or '').strip()} (needs tasks running "
                "concurrently; one instance runs its scripts one after another)",
            )
    if not found:
        return None
    listed = ", ".join(f"{what} <{tag}>" for tag, what in sorted(found.items()))
    return f"outside coverage levels 1-2: {listed}"


def _runnable_timer(elem: etree._Element) -> bool:
    """flowcore runs timer catch events with a duration or a date; not timer boundaries, starts or cycles."""
    parent = elem.getparent()
    owner = parent.tag if parent is not None else None
    if owner == f"{_NS}definitions":  # a shared definition used through eventDefinitionRef
        return all(_runnable_owner(ref) for ref in _referrers(elem))
    parts = {child.tag for child in elem if isinstance(child.tag, str)}
    return owner == f"{_NS}intermediateCatchEvent" and bool(parts) and f"{_NS}timeCycle" not in parts


def _runnable_owner(event: etree._Element) -> bool:
    return event.tag == f"{_NS}intermediateCatchEvent"


def _referrers(definition: etree._Element) -> list[etree._Element]:
    ident = definition.get("id")
    root = definition.getroottree().getroot()
    return [
        ref.getparent()
        for ref in root.iter(f"{_NS}eventDefinitionRef")
        if (ref.text or "").strip().rpartition(":")[2] == ident and ref.getparent() is not None
    ]


def read_model(case: Case) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.fromstring((HERE / case.file).read_bytes(), parser)


def rewrite(root: etree._Element) -> bytes:
    """Placeholders to JavaScript; Java-flavoured conditions to JavaScript."""
    for elem in root.iter(f"{_NS}script"):
        token = (elem.text or "").strip()
        if token in SCRIPTS:
            elem.text = SCRIPTS[token]
    for elem in root.iter(f"{_NS}conditionExpression"):
        elem.text = (elem.text or "").replace(".contains(", ".includes(")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class CountingIds:
    def __init__(self) -> None:
        self._next = itertools.count(1)

    def new_id(self) -> str:
        return f"betsy-{next(self._next)}"


NOW = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Outcome:
    trace: list[str]
    state: InstanceState | None = None


def _drive(definition: Definition, state: InstanceState, ids: CountingIds) -> InstanceState:
    """Complete waiting user tasks (as a test that needs them would), and fire timers on a virtual
    clock, earliest first."""
    for _ in range(50):
        if state.status is not InstanceStatus.WAITING:
            break
        waits = waiting_tasks(definition, state)
        users = [w for w in waits if w.kind == "userTask"]
        if users:
            state = engine.complete_task(
                definition, state, now=NOW, ids=ids, token_id=users[0].token_id
            ).state
            continue
        timers = sorted(
            (t.blocked_on.due_at, t.id)
            for t in state.tokens
            if t.blocked_on is not None and t.blocked_on.kind == "timer" and t.blocked_on.due_at is not None
        )
        if not timers:
            break
        due, token_id = timers[0]
        state = engine.fire_timer(definition, state, token_id=token_id, now=due, ids=ids).state
    return state


def run_case(case: Case, xml: bytes) -> Outcome:
    try:
        definition = load_definition(xml)
    except InvalidDefinition:
        return Outcome(["ERROR_deployment"])
    variables: dict[str, Any] = {
        "integerVariable": case.integer_variable,
        "testCaseNumber": case.number,
        "trace": [],
    }
    if case.input_test is not None:
        variables["test"] = case.input_test
    ids = CountingIds()
    try:
        state = engine.start(
            definition,
            instance_guid=f"betsy-{case.name}",
            variables=variables,
            now=NOW,
            ids=ids,
            process_key=case.name,
        ).state
        state = _drive(definition, state, ids)
    except DomainError:
        return Outcome(["ERROR_runtime"])
    trace = [str(line) for line in state.variables.get("trace") or []]
    if state.status is InstanceStatus.ERROR:
        trace.append("ERROR_runtime")
    if state.status is InstanceStatus.COMPLETED and state.outcome == "error":
        trace.append("ERROR_thrownErrorEvent")
    if state.variables.get("marker"):
        trace.append("MARKER_exists")
    if state.variables.get("loggedData") == "String":
        trace.append("DATA_correct")
    return Outcome(trace, state)


def comparable(actual: list[str], expected: tuple[str, ...]) -> list[str]:
    """The generic expectation ERROR accepts either deployment or runtime failure."""
    if "ERROR" in expected:
        return sorted("ERROR" if line in ("ERROR_deployment", "ERROR_runtime") else line for line in actual)
    return sorted(actual)
