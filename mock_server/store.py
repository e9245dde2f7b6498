"""Where the mock keeps its state: one ``Store`` interface, kept in memory or in Redis.

Everything a worker must agree on lives behind it: tasks and their per-key
index, the request journal, the virtual clock, hosted and uploaded media and
the signing secret. Task state itself is a pure function of a record's plan
and the clock (``contracts.lifecycle``), so several workers, or several hosts
behind a load balancer, need no coordination beyond a shared store.

Every part is bounded (``Limits``): tasks in all and per key, the journal in
bytes, media in files and bytes in all and per key. When one key reaches its
own cap its oldest task or file makes room, so a key only ever evicts its own;
when the whole store is full, new work is refused until retention frees room.

``MemoryStore`` is the default and keeps everything in this process;
``mock_server.redis_store.RedisStore`` is the shared one. Both pass
``tests/test_store.py``.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from contracts.errors import PaddockError
from contracts.media import MediaInfo
from contracts.task import TaskRecord
from mock_server.clock import Clock

__all__ = ["Blob", "Limits", "MemoryStore", "Store", "StoreFull", "StoreUnavailable"]

MiB = 1024 * 1024
# A tombstone (an expired task's id and owner, nothing else) lasts this many keepings, so
# an expired id keeps answering as expired rather than as never issued.
TOMBSTONE_KEEPS = 10


@dataclass(frozen=True)
class Limits:
    """Every bound on the mock's state, with the defaults ``paddock serve`` documents.

    ``media_retention`` is how long hosted and uploaded files stay usable
    (DashScope keeps temporary upload URLs 48 h).
    """

    max_tasks: int = 200_000
    max_tasks_per_key: int = 10_000
    journal_bytes: int = 8 * MiB
    media_bytes: int = 512 * MiB
    media_files: int = 10_000
    media_bytes_per_key: int = 128 * MiB
    media_files_per_key: int = 1_000
    media_retention: float = 48 * 3600.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"{name} must be above 0, got {value}")


class StoreFull(PaddockError):
    """The store is at a global bound; the message says which and how to make room."""


class StoreUnavailable(PaddockError):
    """The shared store cannot be reached or keeps failing; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored file: its bytes, the type the mock probed, and who put it there."""

    data: bytes
    content_type: str
    info: MediaInfo | None
    owner: str

    @property
    def footprint(self) -> int:
        """Bytes it costs to keep: data plus key-sized metadata, so empty files still count."""
        return len(self.data) + len(self.content_type) + len(self.owner) + 256


class Store(Protocol):
    """What the mock needs from its state; both implementations pass one shared test suite."""

    limits: Limits
    clock: Clock
    # How long each provider's tasks are kept: the task id's retention plus its result
    # link's, so a link handed out at the last moment still downloads. Past it a task is
    # gone (a tombstone remains), in virtual time and, in Redis, as key expiry.
    retention: Mapping[str, float]

    async def start(self) -> None:
        """Connect, load the shared clock and secret; called once before the first request."""

    async def close(self) -> None: ...

    async def secret(self) -> bytes:
        """The signing secret every worker shares, so links and owners agree across them."""

    # -- tasks --

    async def put_task(self, task: TaskRecord) -> TaskRecord:
        """Store a new task; evicts the key's own oldest at its cap, raises StoreFull at the total.

        Answers the record as stored: a shared clock that moved meanwhile re-dates it.
        """

    async def get_task(self, provider: str, task_id: str) -> TaskRecord | None: ...

    async def replace_task(self, old: TaskRecord, new: TaskRecord) -> bool:
        """Compare-and-swap: False when ``old`` is no longer the stored record."""

    async def owner_tasks(self, provider: str, owner: str) -> list[TaskRecord]:
        """The key's live tasks of one provider, newest first (at most the per-key cap)."""

    async def page_tasks(
        self, provider: str | None, offset: int, limit: int
    ) -> tuple[list[TaskRecord], int]:
        """A page of tasks newest first, and how many there are in all."""

    async def count_tasks(self) -> int: ...

    async def expired_owner(self, provider: str, task_id: str) -> str | None:
        """Who owned a task that outlived its retention, for a while after it went.

        Only the id and the owner are kept (nothing of the request), so a
        provider that answers an expired id differently from an unknown one
        can still be mocked after the task itself is gone.
        """

    async def previous_poll(self, provider: str, task_id: str, now: float) -> float | None:
        """Record a poll of a task at ``now``; answer when it was polled before, if ever."""

    # -- journal --

    async def journal_append(self, entry: bytes) -> None: ...

    async def journal_read(self, limit: int) -> list[tuple[int, bytes]]:
        """The newest ``limit`` entries with their sequence numbers, newest first."""

    async def journal_size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""

    # -- media --

    async def put_blob(self, key: str, blob: Blob) -> None:
        """Keep a file; evicts the owner's oldest at its caps, raises StoreFull at the totals."""

    async def get_blob(self, key: str) -> Blob | None: ...

    # -- clock and housekeeping --

    async def advance_clock(self, seconds: float) -> float:
        """Move every worker's clock forward; answers the new time."""

    async def reset(self) -> None:
        """Forget tasks, journal and media (the clock and the secret stay)."""


@dataclass
class _MediaOwner:
    files: OrderedDict[str, None] = field(default_factory=OrderedDict)
    bytes: int = 0


class MemoryStore:
    """Everything in this process: the default, and the reference for ``RedisStore``.

    Tasks sit in one OrderedDict in creation order, so expiry and paging walk
    it from either end; each key's tasks have their own ordered index so the
    per-key cap evicts that key's oldest in O(1). (OrderedDict, not dict: a
    plain dict emptied from the front makes finding its oldest entry slow.)
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Clock | None = None,
        retention: Mapping[str, float] | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.clock = clock or Clock()
        self.retention: Mapping[str, float] = retention or {}
        self._secret = secret or secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._tasks: OrderedDict[tuple[str, str], TaskRecord] = OrderedDict()
        self._owned: dict[tuple[str, str], OrderedDict[str, None]] = {}
        self._polls: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._expired: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._journal: deque[tuple[int, bytes]] = deque()
        self._journal_bytes = 0
        self._journal_seq = 0
        self._blobs: OrderedDict[str, tuple[Blob, float]] = OrderedDict()
        self._media_owners: dict[str, _MediaOwner] = {}
        self._media_bytes = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def secret(self) -> bytes:
        return self._secret

    # -- tasks ----------------------------------------------------------------------------------

    async def put_task(self, task: TaskRecord) -> TaskRecord:
        with self._lock:
            self._expire_tasks()
            owned = self._owned.setdefault((task.provider, task.owner), OrderedDict())
            if len(owned) >= self.limits.max_tasks_per_key:
                oldest = next(iter(owned))
                self._drop_task(task.provider, oldest)
            if len(self._tasks) >= self.limits.max_tasks:
                raise StoreFull(
                    f"the mock holds {len(self._tasks)} tasks, its --max-tasks; tasks leave "
                    "with their retention, or POST /_paddock/reset"
                )
            self._tasks[(task.provider, task.id)] = task
            owned[task.id] = None
        return task

    def _drop_task(self, provider: str, task_id: str, *, expired: bool = False) -> None:
        """Forget a task; an expired one leaves a tombstone: its id and owner alone."""
        task = self._tasks.pop((provider, task_id), None)
        if task is None:
            return
        if expired:
            retention = self.retention.get(provider, 86400.0)
            until = task.created_at + TOMBSTONE_KEEPS * retention
            self._expired[(provider, task_id)] = (task.owner, until)
            while len(self._expired) > self.limits.max_tasks:
                self._expired.popitem(last=False)
        owned = self._owned.get((provider, task.owner))
        if owned is not None:
            owned.pop(task_id, None)
            if not owned:
                del self._owned[(provider, task.owner)]
        self._polls.pop((provider, task_id), None)

    def _expire_tasks(self) -> None:
        """Drop tasks past their provider's retention, oldest first; stops at the first live one."""
        now = self.clock.now()
        while self._expired and next(iter(self._expired.values()))[1] <= now:
            self._expired.popitem(last=False)
        while self._tasks:
            (provider, task_id), task = next(iter(self._tasks.items()))
            retention = self.retention.get(provider, float("inf"))
            if now - task.created_at < retention:
                return
            self._drop_task(provider, task_id, expired=True)

    def _live(self, task: TaskRecord | None) -> TaskRecord | None:
        if task is None:
            return None
        keep = self.retention.get(task.provider, float("inf"))
        return task if self.clock.now() - task.created_at < keep else None

    async def get_task(self, provider: str, task_id: str) -> TaskRecord | None:
        return self._live(self._tasks.get((provider, task_id)))

    async def replace_task(self, old: TaskRecord, new: TaskRecord) -> bool:
        with self._lock:
            if self._tasks.get((old.provider, old.id)) is not old:
                return False
            self._tasks[(old.provider, old.id)] = new
            return True

    async def owner_tasks(self, provider: str, owner: str) -> list[TaskRecord]:
        ids = list(self._owned.get((provider, owner), ()))
        found = (self._live(self._tasks.get((provider, task_id))) for task_id in reversed(ids))
        return [task for task in found if task is not None]

    async def page_tasks(
        self, provider: str | None, offset: int, limit: int
    ) -> tuple[list[TaskRecord], int]:
        self._expire_tasks()
        tasks = list(self._tasks.values())
        if provider is not None:
            tasks = [task for task in tasks if task.provider == provider]
        tasks.reverse()
        return tasks[offset : offset + limit], len(tasks)

    async def count_tasks(self) -> int:
        with self._lock:
            self._expire_tasks()
        return len(self._tasks)

    async def expired_owner(self, provider: str, task_id: str) -> str | None:
        task = self._tasks.get((provider, task_id))
        if task is not None:
            return task.owner if self._live(task) is None else None
        held = self._expired.get((provider, task_id))
        return held[0] if held is not None and held[1] > self.clock.now() else None

    async def previous_poll(self, provider: str, task_id: str, now: float) -> float | None:
        key = (provider, task_id)
        with self._lock:
            last = self._polls.pop(key, None)
            self._polls[key] = now
            # One entry per polled task; bounded like the tasks themselves.
            while len(self._polls) > self.limits.max_tasks:
                self._polls.popitem(last=False)
        return last

    # -- journal --------------------------------------------------------------------------------

    async def journal_append(self, entry: bytes) -> None:
        with self._lock:
            self._journal_seq += 1
            self._journal.append((self._journal_seq, entry))
            self._journal_bytes += len(entry)
            while self._journal_bytes > self.limits.journal_bytes and len(self._journal) > 1:
                self._journal_bytes -= len(self._journal.popleft()[1])

    async def journal_read(self, limit: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for entry in reversed(self._journal):
            if len(out) >= limit:
                break
            out.append(entry)
        return out

    async def journal_size(self) -> tuple[int, int]:
        return len(self._journal), self._journal_bytes

    # -- media ----------------------------------------------------------------------------------

    async def put_blob(self, key: str, blob: Blob) -> None:
        limits = self.limits
        size = blob.footprint + len(key)
        if size > limits.media_bytes_per_key:
            raise StoreFull(
                f"the file takes {size} bytes, "
                f"over --media-bytes-per-key {limits.media_bytes_per_key}"
            )
        with self._lock:
            self._expire_blobs()
            self._drop_blob(key)
            owner = self._media_owners.setdefault(blob.owner, _MediaOwner())
            while owner.files and (
                len(owner.files) >= limits.media_files_per_key
                or owner.bytes + size > limits.media_bytes_per_key
            ):
                self._drop_blob(next(iter(owner.files)))
            if (
                len(self._blobs) >= limits.media_files
                or self._media_bytes + size > limits.media_bytes
            ):
                raise StoreFull(
                    f"the mock holds {len(self._blobs)} files in {self._media_bytes} bytes, at its "
                    "--media-files/--media-bytes; files leave with --media-retention, or POST "
                    "/_paddock/reset"
                )
            owner = self._media_owners.setdefault(blob.owner, owner)
            self._blobs[key] = (blob, self.clock.now() + limits.media_retention)
            owner.files[key] = None
            owner.bytes += size
            self._media_bytes += size

    def _drop_blob(self, key: str) -> None:
        held = self._blobs.pop(key, None)
        if held is None:
            return
        blob = held[0]
        size = blob.footprint + len(key)
        self._media_bytes -= size
        owner = self._media_owners[blob.owner]
        owner.files.pop(key, None)
        owner.bytes -= size
        if not owner.files:
            del self._media_owners[blob.owner]

    def _expire_blobs(self) -> None:
        now = self.clock.now()
        while self._blobs:
            key, (_, expires) = next(iter(self._blobs.items()))
            if expires > now:
                return
            self._drop_blob(key)

    async def get_blob(self, key: str) -> Blob | None:
        held = self._blobs.get(key)
        if held is None or held[1] <= self.clock.now():
            return None
        return held[0]

    # -- clock and housekeeping -----------------------------------------------------------------

    async def advance_clock(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    async def reset(self) -> None:
        with self._lock:
            self._tasks.clear()
            self._owned.clear()
            self._polls.clear()
            self._expired.clear()
            self._journal.clear()
            self._journal_bytes = 0
            self._blobs.clear()
            self._media_owners.clear()
            self._media_bytes = 0
