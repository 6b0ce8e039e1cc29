"""The engine's public API: pure transitions over an instance state.

Each function takes the definition, the current state (never mutated) and the time and id
source as arguments, runs the token machine until every token waits, finishes or blocks on
I/O, and returns a Transition (new state, history events, effects).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.model import Definition, ProcessGraph
from domain.state import ExecutionMode, InstanceState
from domain.transition import IdSource, Transition

# Resolves a call activity's calledElement (process id or key) to a graph: first the same
# document, then whatever the caller pre-loaded from other deployments.
ProcessLookup = Callable[[str], ProcessGraph | None]


@dataclass(frozen=True, slots=True)
class Limits:
    max_steps: int = 1000  # node executions per command before LoopLimitExceeded


def start(
    definition: Definition,
    *,
    instance_guid: str,
    variables: Mapping[str, Any],
    now: datetime,
    ids: IdSource,
    process_key: str | None = None,
    start_node_id: str | None = None,
    execution_mode: ExecutionMode = ExecutionMode.UNSUPERVISED,
    actor: str | None = None,
    limits: Limits = Limits(),
    lookup: ProcessLookup | None = None,
) -> Transition:
    raise NotImplementedError
