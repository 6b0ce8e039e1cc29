"""The immutable definition graph a BPMN document is parsed into.

Every node of a document lives in one flat table keyed by its id (BPMN ids are unique per
document); nesting is expressed by `Node.scope`, the id of the enclosing embedded subprocess
(None at process level). The engine never touches XML: it reads only these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class NodeKind(StrEnum):
    START_EVENT = "startEvent"
    END_EVENT = "endEvent"
    INTERMEDIATE_CATCH_EVENT = "intermediateCatchEvent"
    INTERMEDIATE_THROW_EVENT = "intermediateThrowEvent"
    BOUNDARY_EVENT = "boundaryEvent"
    TASK = "task"
    USER_TASK = "userTask"
    SCRIPT_TASK = "scriptTask"
    SERVICE_TASK = "serviceTask"
    MANUAL_TASK = "manualTask"
    SEND_TASK = "sendTask"
    RECEIVE_TASK = "receiveTask"
    BUSINESS_RULE_TASK = "businessRuleTask"
    EXCLUSIVE_GATEWAY = "exclusiveGateway"
    PARALLEL_GATEWAY = "parallelGateway"
    INCLUSIVE_GATEWAY = "inclusiveGateway"
    EVENT_BASED_GATEWAY = "eventBasedGateway"
    COMPLEX_GATEWAY = "complexGateway"
    SUB_PROCESS = "subProcess"
    TRANSACTION = "transaction"
    AD_HOC_SUB_PROCESS = "adHocSubProcess"
    CALL_ACTIVITY = "callActivity"


# Kinds that count as "tasks" for progress, supervised pauses and completedTasks.
TASK_KINDS = frozenset(
    {
        NodeKind.TASK,
        NodeKind.USER_TASK,
        NodeKind.SCRIPT_TASK,
        NodeKind.SERVICE_TASK,
        NodeKind.MANUAL_TASK,
        NodeKind.SEND_TASK,
        NodeKind.RECEIVE_TASK,
        NodeKind.BUSINESS_RULE_TASK,
        NodeKind.CALL_ACTIVITY,
    }
)

GATEWAY_KINDS = frozenset(
    {
        NodeKind.EXCLUSIVE_GATEWAY,
        NodeKind.PARALLEL_GATEWAY,
        NodeKind.INCLUSIVE_GATEWAY,
        NodeKind.EVENT_BASED_GATEWAY,
        NodeKind.COMPLEX_GATEWAY,
    }
)

SUBPROCESS_KINDS = frozenset({NodeKind.SUB_PROCESS, NodeKind.TRANSACTION, NodeKind.AD_HOC_SUB_PROCESS})


class EventKind(StrEnum):
    NONE = "none"
    TERMINATE = "terminate"
    ERROR = "error"
    ESCALATION = "escalation"
    TIMER = "timer"
    MESSAGE = "message"
    SIGNAL = "signal"
    CONDITIONAL = "conditional"
    LINK = "link"
    COMPENSATE = "compensate"
    CANCEL = "cancel"
    MULTIPLE = "multiple"


@dataclass(frozen=True, slots=True)
class EventDefinition:
    kind: EventKind
    # error/escalation code, message/signal name, link name, condition text: resolved from refs
    code: str | None = None
    ref: str | None = None
    # timer: which of timeDuration/timeDate/timeCycle and its raw expression
    timer_type: str | None = None
    timer_value: str | None = None


@dataclass(frozen=True, slots=True)
class LoopSpec:
    """Loop/multi-instance characteristics; parsed so models load, executed from coverage level 4."""

    kind: str  # "standard" | "multiInstance"
    sequential: bool = False
    cardinality: str | None = None
    condition: str | None = None
    collection: str | None = None
    element_variable: str | None = None
    maximum: int | None = None  # standard loops: loopMaximum
    test_before: bool = False  # standard loops: evaluate the condition before the first run


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    source: str
    target: str
    name: str = ""
    condition: str | None = None  # raw expression text (without CDATA), None when unconditional
    line: int = 0


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: NodeKind
    name: str = ""
    line: int = 0
    scope: str | None = None  # enclosing embedded subprocess id
    incoming: tuple[str, ...] = ()  # flow ids
    outgoing: tuple[str, ...] = ()  # flow ids, document order
    default_flow: str | None = None
    # extension properties, keys lower-cased (`extensionElements/*:properties/*:property`)
    properties: Mapping[str, str] = field(default_factory=_empty)
    script: str | None = None
    script_format: str | None = None
    events: tuple[EventDefinition, ...] = ()  # event definitions (events only)
    attached_to: str | None = None  # boundary events
    cancel_activity: bool = True  # boundary events
    called_element: str | None = None  # call activities: process id or key
    assignee: str | None = None
    candidate_groups: str | None = None
    loop: LoopSpec | None = None
    start_quantity: int = 1
    completion_quantity: int = 1
    is_for_compensation: bool = False
    triggered_by_event: bool = False  # event subprocesses

    def prop(self, name: str, default: str | None = None) -> str | None:
        return self.properties.get(name.lower(), default)

    @property
    def event(self) -> EventDefinition | None:
        return self.events[0] if self.events else None

    @property
    def is_task(self) -> bool:
        return self.kind in TASK_KINDS


@dataclass(frozen=True, slots=True)
class ProcessGraph:
    id: str
    name: str
    is_executable: bool
    nodes: Mapping[str, Node]
    flows: Mapping[str, Flow]
    # start nodes per scope: "" for the process level, else the subprocess id
    scope_starts: Mapping[str, tuple[str, ...]]
    # boundary event ids per host activity id
    boundaries: Mapping[str, tuple[str, ...]]
    properties: Mapping[str, str] = field(default_factory=_empty)

    @property
    def start_nodes(self) -> tuple[str, ...]:
        return self.scope_starts.get("", ())


@dataclass(frozen=True, slots=True)
class Definition:
    """One deployed document: its processes (executable or not) plus global elements."""

    processes: Mapping[str, ProcessGraph]
    main_process: str  # the first executable process in document order
    errors: Mapping[str, str] = field(default_factory=_empty)  # error id -> errorCode
    messages: Mapping[str, str] = field(default_factory=_empty)  # message id -> name
    signals: Mapping[str, str] = field(default_factory=_empty)  # signal id -> name
    escalations: Mapping[str, str] = field(default_factory=_empty)  # escalation id -> code
    # globalScriptTask / globalUserTask etc. callable by a call activity, as single-node graphs
    global_tasks: Mapping[str, Node] = field(default_factory=lambda: MappingProxyType({}))
    target_namespace: str = ""
    element_counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def executable_processes(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.processes.values() if p.is_executable)

    def process(self, key: str | None = None) -> ProcessGraph:
        return self.processes[key or self.main_process]
