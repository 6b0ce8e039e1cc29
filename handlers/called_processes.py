"""Call activities may name processes deployed in other documents; fetch those before the engine runs.

The engine is pure and synchronous, so everything it might call is loaded up front (transitively,
to a bounded depth) and handed over as a lookup function.
"""

from __future__ import annotations

from domain.engine import ProcessLookup
from domain.model import Definition, NodeKind, ProcessGraph
from handlers.deps import Deps
from handlers.ports import UnitOfWork

MAX_DEPTH = 5


def _called_elements(definition: Definition) -> set[str]:
    return {
        node.called_element
        for process in definition.processes.values()
        for node in process.nodes.values()
        if node.kind is NodeKind.CALL_ACTIVITY and node.called_element
    }


def _local(definition: Definition, key: str) -> bool:
    return key in definition.processes or key in definition.global_tasks


async def preload_called_processes(
    uow: UnitOfWork, deps: Deps, tenant_id: str, definition: Definition
) -> ProcessLookup:
    found: dict[str, ProcessGraph] = {}
    pending = [definition]
    for _ in range(MAX_DEPTH):
        missing = {
            key for doc in pending for key in _called_elements(doc) if not _local(doc, key) and key not in found
        }
        if not missing:
            break
        pending = []
        for key in sorted(missing):
            stored = await uow.definitions.find_process(tenant_id, key)
            if stored is None:
                continue  # the engine reports an unknown called element on the instance
            other = deps.definitions.get(stored)
            found[key] = other.processes[key]
            pending.append(other)
    return found.get
