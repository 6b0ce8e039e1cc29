"""Call activities may name processes deployed in other documents; fetch those before the engine runs.

The engine is pure and synchronous, so everything it might call is loaded up front (transitively,
to a bounded depth) and handed over as a lookup function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from domain.graph_index import index_of
from domain.model import Definition, ProcessGraph
from domain.state import InstanceState
from handlers.deps import Deps
from handlers.ports import UnitOfWork

MAX_DEPTH = 5


def _called_elements(definition: Definition) -> set[str]:
    return {key for process in definition.processes.values() for key in index_of(process).called_elements}


def _local(definition: Definition, key: str) -> bool:
    return key in definition.processes or key in definition.global_tasks


@dataclass(frozen=True, slots=True)
class CalledProcesses:
    """Processes of other deployments an instance may call, with the definition id each came from."""

    graphs: dict[str, ProcessGraph] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def lookup(self, key: str) -> ProcessGraph | None:
        return self.graphs.get(key)

    def pin(self, state: InstanceState) -> None:
        """An instance that has entered a called process stays on that version of it, as it does on
        its own: a later deployment of the callee must not change the graph under its tokens."""
        for token in state.tokens:
            key = token.process_key
            if key is not None and key in self.ids:
                state.called_definitions.setdefault(key, self.ids[key])


async def preload_called_processes(
    uow: UnitOfWork, deps: Deps, tenant_id: str, definition: Definition, pinned: Mapping[str, int] | None = None
) -> CalledProcesses:
    called = CalledProcesses()
    pending = [definition]
    for _ in range(MAX_DEPTH):
        missing = {
            key for doc in pending for key in _called_elements(doc) if not _local(doc, key) and key not in called.graphs
        }
        if not missing:
            break
        pending = []
        for key in sorted(missing):
            pin = (pinned or {}).get(key)
            stored = await (
                uow.definitions.get(tenant_id, pin) if pin is not None else uow.definitions.find_process(tenant_id, key)
            )
            if stored is None:
                continue  # the engine reports an unknown called element on the instance
            other = deps.definitions.get(stored)
            if key not in other.processes:
                continue
            called.graphs[key] = other.processes[key]
            called.ids[key] = stored.id
            pending.append(other)
    return called
