"""Parsed definitions by stored id. A stored version never changes, so entries never go stale."""

from __future__ import annotations

from collections import OrderedDict

from domain.definition_loader import load_definition
from domain.model import Definition
from handlers.ports import DefinitionRecord


class DefinitionCache:
    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._items: OrderedDict[int, Definition] = OrderedDict()

    def get(self, record: DefinitionRecord) -> Definition:
        found = self._items.get(record.id)
        if found is not None:
            self._items.move_to_end(record.id)
            return found
        definition = load_definition(record.bpmn_xml)
        self.put(record.id, definition)
        return definition

    def put(self, definition_id: int, definition: Definition) -> None:
        self._items[definition_id] = definition
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)
