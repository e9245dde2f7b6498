"""The shared store: Redis, through the maintained ``redis`` client's asyncio API.

Several workers, or several hosts behind a load balancer, pointed at one
Redis behave as one mock: tasks, the per-key index, the journal, the clock,
media and the signing secret all live there, and a restart loses nothing.
Retention is Redis expiry: a task's key lives as long as its provider keeps
task ids, in wall seconds at the clock's speed.

Two things keep it fast enough to stand beside an in-memory mock:

- **Batching.** Every command a worker issues within one turn of its event
  loop goes to Redis as one pipeline (``_Batch``), so thirty concurrent polls
  cost one round trip, not thirty; the client's per-command overhead is most
  of what a round trip costs here.
- **One script per write.** A create is one server-side script that checks
  the clock, trims expired and over-cap entries, and stores the task, so the
  per-key cap and the global cap hold across workers without locks.

The clock's anchor rides along with every batch, so a worker computes task
states from the same clock as the worker that last moved it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any, TypeAlias

import orjson
import redis.asyncio as redis
from redis.exceptions import NoScriptError

from contracts.cache import BoundedCache
from contracts.media import MediaInfo
from contracts.task import TaskRecord
from mock_server import redis_scripts as lua
from mock_server.clock import Clock, ClockState
from mock_server.store import Blob, Limits, StoreFull, StoreUnavailable

__all__ = ["RedisStore"]

Queue = Callable[[Any], Any]
Waiter: TypeAlias = "asyncio.Future[Any] | _Fanout"

log = logging.getLogger("paddock.store")

_CLOCK_FIELDS = ("wall", "virtual", "speed", "advanced", "gen")
# Journal entries wait at most this long (seconds) for a pipeline to ride along with;
# a journal read waits twice as long first, so every worker's entries have landed.
JOURNAL_DELAY = 0.002
# Pipelines a worker keeps out at once; more work waits for the next one.
MAX_IN_FLIGHT = 4
_SEP = "\x1f"


class _Batch:
    """Commands issued in one event-loop turn, sent as one pipeline when the turn ends.

    Each command gets a future for its own reply. Journal entries ride along
    with the next pipeline instead of starting one (after at most
    ``JOURNAL_DELAY`` they go on their own), since nothing waits for them.
    The clock's fields are read at the end of every pipeline, so whoever
    awaited a command also sees the clock as it stood when Redis answered.
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._ops: list[tuple[Queue, Waiter]] = []
        self._gets: list[tuple[str, asyncio.Future[Any]]] = []
        self._journal: list[bytes] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.loop = self._loop = asyncio.get_running_loop()
        self._running: set[asyncio.Task[None]] = set()
        self._waiting = False

    def command(self, queue: Queue) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._ops.append((queue, future))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def get(self, key: str) -> asyncio.Future[Any]:
        """A GET, sent with the turn's other GETs as one MGET: polls are most of the traffic."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._gets.append((key, future))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def journal(self, entry: bytes) -> None:
        self._journal.append(entry)
        if self._timer is None and not self._scheduled:
            self._timer = self._loop.call_later(JOURNAL_DELAY, self._journal_due)

    def _journal_due(self) -> None:
        self._timer = None
        if self._journal and not self._scheduled:
            self._scheduled = True
            self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._running) >= MAX_IN_FLIGHT:
            # Under load, what arrives while pipelines are out waits for one to come
            # back and goes in the next, larger one: fewer round trips, each fuller.
            self._waiting = True
            return
        ops, self._ops = self._ops, []
        gets, self._gets = self._gets, []
        entries, self._journal = self._journal, []
        if gets:
            keys = [key for key, _ in gets]
            ops.append((lambda pipe: pipe.mget(keys), _Fanout([f for _, f in gets])))
        if not ops and not entries:
            return
        task = self._loop.create_task(self._send(ops, entries))
        self._running.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._waiting:
            self._waiting = False
            self._flush()

    async def _send(self, ops: list[tuple[Queue, Waiter]], entries: list[bytes]) -> None:
        store = self._store
        try:
            async with store.client.pipeline(transaction=False) as pipe:
                # Entries first: a journal read in this same pipeline then sees them.
                if entries:
                    store.journal_command(pipe, entries)
                for queue, _ in ops:
                    queue(pipe)
                pipe.hmget(store.key("clock"), *_CLOCK_FIELDS)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the store is unreachable: every waiter hears it
            failure = StoreUnavailable(f"Redis at {store.url}: {exc}")
            for _, future in ops:
                if not future.done():
                    future.set_exception(failure)
            if entries:
                log.warning("%d journal entries lost: %s", len(entries), failure)
            return
        store.adopt_clock(replies[-1])
        if entries:
            written, replies = replies[0], replies[1:]
            if isinstance(written, NoScriptError):
                await store.load_scripts()
                async with store.client.pipeline(transaction=False) as pipe:
                    store.journal_command(pipe, entries)
                    await pipe.execute(raise_on_error=False)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis restarted or its scripts were flushed: load them and run those again.
            await store.load_scripts()
            replies = await self._retry(ops, replies)
        for (_, future), reply in zip(ops, replies, strict=False):
            _settle(future, reply)

    async def _retry(self, ops: list[tuple[Queue, Waiter]], replies: list[Any]) -> list[Any]:
        store = self._store
        out = list(replies)
        for index, ((queue, _), reply) in enumerate(zip(ops, replies, strict=False)):
            if isinstance(reply, NoScriptError):
                async with store.client.pipeline(transaction=False) as pipe:
                    queue(pipe)
                    out[index] = (await pipe.execute(raise_on_error=False))[0]
        return out


class _OneWrite(redis.Connection):
    """A connection that hands a pipeline to the socket as one buffer.

    redis-py packs a pipeline into many small chunks and writes them as a list;
    on uvloop each becomes its own send, so a pipeline of twenty commands cost
    a third of a millisecond. Joined, it is one write.
    """

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not isinstance(command, (bytes, str)):
            command = b"".join(command)
        await super().send_packed_command(command, check_health)


class _Fanout:
    """Stands in for one future per key of a coalesced MGET: each gets its own value."""

    def __init__(self, futures: list[asyncio.Future[Any]]) -> None:
        self.futures = futures

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    def set_result(self, values: list[Any]) -> None:
        for future, value in zip(self.futures, values, strict=True):
            if not future.done():
                future.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(exc)


def _settle(future: asyncio.Future[Any] | _Fanout, reply: Any) -> None:
    if future.done():
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)


class RedisStore:
    """``Store`` on Redis; ``url`` as redis-py takes it (``redis://HOST:PORT/DB``, ``unix://``)."""

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        *,
        clock: Clock | None = None,
        retention: Mapping[str, float] | None = None,
        prefix: str = "paddock:",
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.limits = limits or Limits()
        self.clock = clock or Clock()
        self.retention: Mapping[str, float] = retention or {}
        self.prefix = prefix
        self._max_connections = max_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: redis.Redis | None = None
        self._batch: _Batch | None = None
        self._shas: dict[str, str] = {}
        self._gen = 0
        self._secret: bytes | None = None
        # Keyed by the stored bytes themselves, so a changed record is a new entry.
        self._decoded: BoundedCache[bytes, TaskRecord] = BoundedCache(4096)

    # -- connection -----------------------------------------------------------------------------

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def client(self) -> redis.Redis:
        self._bind()
        assert self._client is not None
        return self._client

    def _bind(self) -> None:
        """One client per event loop: redis-py connections cannot move between loops."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        pool = redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._max_connections,
            timeout=10,
            connection_class=_OneWrite,
        )
        self._client = redis.Redis(connection_pool=pool)
        self._loop = loop
        self._batch = _Batch(self)

    def _command(self, queue: Queue) -> asyncio.Future[Any]:
        """``queue`` adds one command to the turn's pipeline; the future gets its reply."""
        batch = self._batch
        if batch is None or batch.loop is not asyncio.get_running_loop():
            self._bind()
            batch = self._batch
            assert batch is not None
        return batch.command(queue)

    def _script(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        sha = self._shas[name]
        return self._command(lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args))

    async def start(self) -> None:
        """Check Redis answers, load the scripts, the shared secret and the clock."""
        client = self.client
        try:
            await client.ping()
        except Exception as exc:
            raise StoreUnavailable(f"cannot reach Redis at {self.url}: {exc}") from None
        await self.load_scripts()
        await client.set(self.key("secret"), _new_secret(), nx=True)
        secret = await client.get(self.key("secret"))
        if not isinstance(secret, bytes):
            raise StoreUnavailable(f"Redis at {self.url} holds no signing secret")
        self._secret = secret
        await self._init_clock()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._loop = None
            self._batch = None

    async def load_scripts(self) -> None:
        for name, source in lua.SCRIPTS.items():
            self._shas[name] = await self.client.script_load(source)

    async def secret(self) -> bytes:
        if self._secret is None:
            await self.start()
        assert self._secret is not None
        return self._secret

    # -- clock ----------------------------------------------------------------------------------

    async def _init_clock(self) -> None:
        """Adopt the shared clock; a new speed continues the same timeline from now."""
        wanted = self.clock.state
        key = self.key("clock")

        async def init(pipe: Any) -> None:
            stored = await pipe.hmget(key, *_CLOCK_FIELDS)
            pipe.multi()
            if stored[0] is None:
                state, gen = wanted, 1
            else:
                state = _clock_state(stored)
                gen = int(stored[4] or 0)
                if state.speed != wanted.speed:
                    state, gen = state.rebased(time.time(), wanted.speed), gen + 1
            pipe.hset(key, mapping=_clock_mapping(state, gen))

        await self.client.transaction(init, key)
        self.adopt_clock(await self.client.hmget(key, *_CLOCK_FIELDS))

    def adopt_clock(self, fields: Sequence[Any]) -> None:
        if not isinstance(fields, list) or fields[0] is None:
            return
        gen = int(fields[4] or 0)
        if gen != self._gen:
            self.clock.state = _clock_state(fields)
            self._gen = gen

    async def advance_clock(self, seconds: float) -> float:
        key = self.key("clock")
        moved: list[ClockState] = []

        async def advance(pipe: Any) -> None:
            stored = await pipe.hmget(key, *_CLOCK_FIELDS)
            state = _clock_state(stored).advanced_by(seconds, time.time())
            moved[:] = [state]
            pipe.multi()
            pipe.hset(key, mapping=_clock_mapping(state, int(stored[4] or 0) + 1))

        await self.client.transaction(advance, key)
        self.adopt_clock(await self.client.hmget(key, *_CLOCK_FIELDS))
        return self.clock.now()

    # -- tasks ----------------------------------------------------------------------------------

    def _task_key(self, provider: str, task_id: str) -> str:
        return self.key("t", provider, task_id)

    def _wall_ms(self, virtual: float) -> int:
        """Wall milliseconds that ``virtual`` seconds take at the clock's speed (frozen: as is)."""
        speed = self.clock.speed
        return max(1000, int((virtual / speed if speed > 0 else virtual) * 1000))

    def _ttl_ms(self, provider: str, created_at: float) -> int:
        """Wall milliseconds until the task's retention ends on the virtual clock."""
        retention = self.retention.get(provider, 86400.0)
        left = created_at + retention - self.clock.now()
        speed = self.clock.speed
        wall = left / speed if speed > 0 else retention
        return max(1000, int(min(wall, retention * 10) * 1000))

    def _index(self, provider: str) -> str:
        return self.key("idx", provider)

    async def put_task(self, task: TaskRecord) -> TaskRecord:
        retention = self.retention.get(task.provider, 86400.0)
        longest = max(self.retention.values(), default=retention)
        indexes = sorted({self._index(p) for p in (*self.retention, task.provider)})
        for _ in range(5):
            now = self.clock.now()
            reply = await self._script(
                "put_task",
                [
                    self._task_key(task.provider, task.id),
                    self.key("o", task.provider, task.owner),
                    self._index(task.provider),
                    self.key("clock"),
                    self.key("x", task.provider, task.id),
                ],
                [
                    orjson.dumps(task.to_json()),
                    repr(task.created_at),
                    self._ttl_ms(task.provider, task.created_at),
                    self.limits.max_tasks_per_key,
                    self.limits.max_tasks,
                    repr(now - retention),
                    str(self._gen),
                    task.id,
                    self.key("t", task.provider, ""),
                    repr(now - longest),
                    task.owner,
                    self.key("x", task.provider, ""),
                    *indexes,
                ],
            )
            if reply == b"ok":
                return task
            if reply == b"full":
                raise StoreFull(
                    f"the mock holds {self.limits.max_tasks} tasks, its --max-tasks; tasks "
                    "leave with their retention, or POST /_paddock/reset"
                )
            # The clock moved under us (another worker advanced it): re-date and retry.
            self.adopt_clock(await self.client.hmget(self.key("clock"), *_CLOCK_FIELDS))
            task = replace(task, created_at=self.clock.now())
        raise StoreUnavailable("the shared clock kept moving while a task was being stored")

    async def get_task(self, provider: str, task_id: str) -> TaskRecord | None:
        batch = self._batch
        if batch is None or batch.loop is not asyncio.get_running_loop():
            self._bind()
            batch = self._batch
            assert batch is not None
        raw = await batch.get(self._task_key(provider, task_id))
        return self._live(self._decode(raw)) if raw is not None else None

    def _decode(self, raw: bytes) -> TaskRecord:
        """A stored record as a TaskRecord; a task is polled again and again, so decode it once."""
        task = self._decoded.get(raw)
        if task is None:
            task = self._decoded.put(raw, TaskRecord.from_json(orjson.loads(raw)))
        return task

    def _live(self, task: TaskRecord) -> TaskRecord | None:
        """The task unless the virtual clock has moved past its keeping (before Redis expiry)."""
        keep = self.retention.get(task.provider, float("inf"))
        return task if self.clock.now() - task.created_at < keep else None

    async def replace_task(self, old: TaskRecord, new: TaskRecord) -> bool:
        reply = await self._script(
            "replace_task",
            [self._task_key(old.provider, old.id)],
            [orjson.dumps(old.to_json()), orjson.dumps(new.to_json())],
        )
        return bool(reply)

    async def _records(self, provider_ids: Sequence[tuple[str, str]]) -> list[TaskRecord]:
        if not provider_ids:
            return []
        keys = [self._task_key(p, i) for p, i in provider_ids]
        raws = await self._command(lambda pipe: pipe.mget(keys))
        found = (self._live(self._decode(raw)) for raw in raws if raw)
        return [task for task in found if task is not None]

    async def owner_tasks(self, provider: str, owner: str) -> list[TaskRecord]:
        key = self.key("o", provider, owner)
        ids = await self._command(lambda pipe: pipe.zrevrange(key, 0, -1))
        return await self._records([(provider, i.decode()) for i in ids])

    async def page_tasks(
        self, provider: str | None, offset: int, limit: int
    ) -> tuple[list[TaskRecord], int]:
        providers = [provider] if provider is not None else sorted(self.retention)
        ranked: list[tuple[float, str, str]] = []
        total = 0
        for name in providers:
            members = await self._newest(name, offset + limit)
            ranked.extend((float(score), name, member.decode()) for member, score in members)
            total += int(await self._live_count(name))
        ranked.sort(reverse=True)
        page = [(name, task_id) for _, name, task_id in ranked[offset : offset + limit]]
        return await self._records(page), total

    def _kept_since(self, provider: str) -> str:
        """The index score from which a provider's tasks are still kept (older ones are gone).

        Index entries are trimmed lazily (when a key or the store is at its cap),
        so reads count and list from this bound rather than from the start.
        """
        return repr(self.clock.now() - self.retention.get(provider, float("inf")))

    def _live_count(self, provider: str) -> asyncio.Future[Any]:
        key, since = self._index(provider), self._kept_since(provider)
        return self._command(lambda pipe: pipe.zcount(key, since, "+inf"))

    def _newest(self, provider: str, count: int) -> asyncio.Future[Any]:
        key, since = self._index(provider), self._kept_since(provider)
        return self._command(
            lambda pipe: pipe.zrevrangebyscore(
                key, "+inf", since, start=0, num=count, withscores=True
            )
        )

    async def count_tasks(self) -> int:
        counts = [self._live_count(name) for name in sorted(self.retention)]
        return sum(int(count) for count in await asyncio.gather(*counts))

    async def expired_owner(self, provider: str, task_id: str) -> str | None:
        key = self.key("x", provider, task_id)
        owner = await self._command(lambda pipe: pipe.get(key))
        if owner is None or await self.get_task(provider, task_id) is not None:
            return None
        return str(owner.decode())

    async def previous_poll(self, provider: str, task_id: str, now: float) -> float | None:
        ttl = self._ttl_ms(provider, now)
        key = self.key("p", provider, task_id)
        last = await self._command(lambda pipe: pipe.set(key, repr(now), get=True, px=ttl))
        return float(last) if last is not None else None

    # -- journal --------------------------------------------------------------------------------

    def journal_command(self, pipe: Any, entries: list[bytes]) -> None:
        pipe.evalsha(
            self._shas["journal"],
            3,
            self.key("j"),
            self.key("jbytes"),
            self.key("jseq"),
            self.limits.journal_bytes,
            *entries,
        )

    async def journal_append(self, entry: bytes) -> None:
        self._bind()
        assert self._batch is not None
        self._batch.journal(entry)

    async def journal_read(self, limit: int) -> list[tuple[int, bytes]]:
        await asyncio.sleep(2 * JOURNAL_DELAY)
        key, stop = self.key("j"), min(limit, 1 << 30) - 1
        raws = await self._command(lambda pipe: pipe.lrange(key, 0, stop))
        out: list[tuple[int, bytes]] = []
        for raw in raws:
            seq, _, entry = raw.partition(b"|")
            out.append((int(seq), entry))
        return out

    async def journal_size(self) -> tuple[int, int]:
        await asyncio.sleep(2 * JOURNAL_DELAY)
        journal, counter = self.key("j"), self.key("jbytes")
        count = await self._command(lambda pipe: pipe.llen(journal))
        size = await self._command(lambda pipe: pipe.get(counter))
        return int(count), int(size or 0)

    # -- media ----------------------------------------------------------------------------------

    async def put_blob(self, key: str, blob: Blob) -> None:
        limits = self.limits
        size = blob.footprint + len(key)
        if size > limits.media_bytes_per_key:
            raise StoreFull(
                f"the file takes {size} bytes, over --media-bytes-per-key "
                f"{limits.media_bytes_per_key}"
            )
        now = self.clock.now()
        meta = orjson.dumps(
            {"type": blob.content_type, "owner": blob.owner, "info": _info(blob.info)}
        )
        reply = await self._script(
            "put_blob",
            [
                self.key("b", key),
                self.key("bz"),
                self.key("bo", blob.owner),
                self.key("bc"),
                self.key("bs"),
            ],
            [
                key,
                blob.data,
                meta,
                size,
                blob.owner,
                repr(now),
                repr(now + limits.media_retention),
                limits.media_files_per_key,
                limits.media_bytes_per_key,
                limits.media_files,
                limits.media_bytes,
                self.key("b", ""),
                self.key("bo", ""),
                self._wall_ms(limits.media_retention),
            ],
        )
        if reply == b"full":
            raise StoreFull(
                "the mock's media store is at its --media-files/--media-bytes; files leave "
                "with --media-retention, or POST /_paddock/reset"
            )

    async def get_blob(self, key: str) -> Blob | None:
        name = self.key("b", key)
        fields = await self._command(lambda pipe: pipe.hmget(name, "data", "meta", "expires"))
        data, meta, expires = fields
        if data is None or meta is None or float(expires) <= self.clock.now():
            return None
        doc = orjson.loads(meta)
        info = MediaInfo(**doc["info"]) if doc.get("info") else None
        return Blob(data, doc["type"], info, doc["owner"])

    # -- housekeeping ---------------------------------------------------------------------------

    async def reset(self) -> None:
        keep = {self.key("secret").encode(), self.key("clock").encode()}
        client = self.client
        batch: list[bytes] = []
        async for name in client.scan_iter(match=self.prefix + "*", count=1000):
            if name not in keep:
                batch.append(name)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)


def _new_secret() -> bytes:
    return secrets.token_bytes(32)


def _clock_state(fields: Sequence[Any]) -> ClockState:
    return ClockState(float(fields[0]), float(fields[1]), float(fields[2]), float(fields[3] or 0))


def _clock_mapping(state: ClockState, gen: int) -> dict[str, str]:
    return {
        "wall": repr(state.wall),
        "virtual": repr(state.virtual),
        "speed": repr(state.speed),
        "advanced": repr(state.advanced),
        "gen": str(gen),
    }


def _info(info: MediaInfo | None) -> dict[str, Any] | None:
    return asdict(info) if info is not None else None
