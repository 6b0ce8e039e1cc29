"""The definition each process key was last started from, per tenant: a start by key alone can
skip reading it again.

Never trusted on its own: the start's one write is guarded (ports.LatestGuard) so that it stores
nothing unless the definition is still the latest active version under the same name, and the
start then looks the definition up as usual. Deploying, renaming, deactivating or deleting a
version, in this process or any other, is therefore seen by the very next start.
"""

from __future__ import annotations

from collections import OrderedDict

from handlers.ports import DefinitionRecord, LatestGuard


class LatestDefinitions:
    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str], DefinitionRecord] = OrderedDict()

    def get(self, tenant_id: str, process_key: str) -> DefinitionRecord | None:
        key = (tenant_id, process_key)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, tenant_id: str, process_key: str, record: DefinitionRecord) -> None:
        key = (tenant_id, process_key)
        self._items[key] = record
        self._items.move_to_end(key)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def forget(self, tenant_id: str, process_key: str) -> None:
        self._items.pop((tenant_id, process_key), None)


def guard_for(process_key: str, record: DefinitionRecord) -> LatestGuard:
    return LatestGuard(process_key=process_key, definition_id=record.id, name=record.name)
