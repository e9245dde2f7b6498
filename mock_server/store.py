"""Task storage for the mock: small immutable records, O(1) by id.

A task is visible only to the key that created it, so every read takes the
owner (a key digest) and answers None for anyone else, exactly as for an
unknown id.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Protocol

from contracts.task import TaskRecord

__all__ = ["MemoryStore", "Store"]


class Store(Protocol):
    """What the mock needs from a task store; a shared (Redis) store implements the same."""

    def put(self, task: TaskRecord) -> None: ...
    def get(
        self, task_id: str, owner: str | None = None, provider: str | None = None
    ) -> TaskRecord | None: ...
    def replace(self, old: TaskRecord, new: TaskRecord) -> bool: ...
    def tasks(
        self, provider: str | None = None, owner: str | None = None
    ) -> Iterator[TaskRecord]: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...


class MemoryStore:
    """A dict of tasks; writes are compare-and-swap so a cancel never overwrites a newer record."""

    # Task records live long and hold no reference cycles, yet each is several
    # GC-tracked objects: with 100k of them every full collection scanned them
    # all (a quarter-second pause at 60k tasks). Freezing moves what exists into
    # the permanent generation; records are still freed by reference counting.
    FREEZE_EVERY = 4096

    def __init__(self, max_tasks: int = 200_000) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()
        self._puts = 0
        self.max_tasks = max_tasks

    def put(self, task: TaskRecord) -> None:
        self._puts += 1
        if self._puts % self.FREEZE_EVERY == 0:
            gc.freeze()
        with self._lock:
            if len(self._tasks) >= self.max_tasks:
                # Oldest first: dicts keep insertion order.
                self._tasks.pop(next(iter(self._tasks)))
            self._tasks[task.id] = task

    def get(
        self, task_id: str, owner: str | None = None, provider: str | None = None
    ) -> TaskRecord | None:
        """The task, if it exists, belongs to ``owner`` and to ``provider`` (when given).

        One process serves every provider from one store; a task is only ever
        visible through the provider that created it.
        """
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if (owner is not None and task.owner != owner) or (
            provider is not None and task.provider != provider
        ):
            return None
        return task

    def replace(self, old: TaskRecord, new: TaskRecord) -> bool:
        with self._lock:
            if self._tasks.get(old.id) is not old:
                return False
            self._tasks[old.id] = new
            return True

    def tasks(self, provider: str | None = None, owner: str | None = None) -> Iterator[TaskRecord]:
        for task in list(self._tasks.values()):
            if provider is not None and task.provider != provider:
                continue
            if owner is not None and task.owner != owner:
                continue
            yield task

    def clear(self) -> None:
        with self._lock:
            self._tasks.clear()

    def __len__(self) -> int:
        return len(self._tasks)
