"""One suite for both stores: what the mock keeps, the bounds it keeps it in, and what it shares.

Every test runs against the in-memory store and against a real Redis, so the
shared store cannot drift from the reference one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from contracts.task import OutputShape, Plan, TaskRecord, TaskRequest
from mock_server.clock import Clock
from mock_server.redis_store import RedisStore
from mock_server.store import Blob, Limits, MemoryStore, Store, StoreFull

RETENTION = {"dashscope": 86400.0, "anyfast": 86400.0}
MakeStore = Callable[..., Store]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> MakeStore:
    """A factory of stores of one kind; several Redis stores on one database are several workers."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def make(limits: Limits | None = None, clock: Clock | None = None) -> Store:
        clock = clock or Clock(speed=0)
        if url is None:
            return MemoryStore(limits, clock=clock, retention=RETENTION)
        return RedisStore(url, limits, clock=clock, retention=RETENTION)

    return make


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def task(task_id: str, owner: str = "alice", provider: str = "dashscope", at: float = 0.0) -> Any:
    return TaskRecord(
        id=task_id,
        provider=provider,
        owner=owner,
        request=TaskRequest(
            model="happyhorse-1.0-t2v",
            prompt="a horse",
            media=(),
            parameters=MappingProxyType({"duration": 5, "resolution": "720P"}),
            explicit=frozenset({"duration"}),
        ),
        plan=Plan(pending=1.0, running=3.0),
        output=OutputShape(1280, 720, 5, 24, 720, "16:9"),
        created_at=at,
        request_id="r",
        upstream_id="u",
        upstream_request_id="ur",
    )


async def started(store: Store) -> Store:
    await store.start()
    return store


def test_tasks_round_trip_and_stay_with_their_provider(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store())
        now = store.clock.now()
        stored = await store.put_task(task("t1", at=now))
        assert await store.get_task("dashscope", "t1") == stored
        assert await store.get_task("anyfast", "t1") is None
        assert await store.get_task("dashscope", "nope") is None
        assert await store.count_tasks() == 1
        await store.close()

    run(go)


def test_a_stuck_task_keeps_its_endless_state(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store())
        stuck = replace(task("t1", at=store.clock.now()), plan=Plan(math.inf, 3.0))
        await store.put_task(stuck)
        read = await store.get_task("dashscope", "t1")
        assert read is not None and read.plan.pending == math.inf
        assert await store.replace_task(read, replace(read, canceled_at=1.0))
        await store.close()

    run(go)


def test_replace_is_compare_and_swap(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store())
        first = await store.put_task(task("t1", at=store.clock.now()))
        read = await store.get_task("dashscope", "t1")
        assert read is not None
        canceled = replace(read, canceled_at=read.created_at + 1)
        assert await store.replace_task(read, canceled)
        # A second writer holding the old record loses: a cancel never overwrites a newer one.
        assert not await store.replace_task(first, replace(first, faults=("x",)))
        assert await store.get_task("dashscope", "t1") == canceled
        await store.close()

    run(go)


def test_a_key_at_its_cap_evicts_only_its_own_oldest(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store(Limits(max_tasks_per_key=3)))
        now = store.clock.now()
        await store.put_task(task("bob-1", owner="bob", at=now))
        for i in range(5):
            await store.put_task(task(f"a{i}", at=now + i))
        mine = await store.owner_tasks("dashscope", "alice")
        assert [t.id for t in mine] == ["a4", "a3", "a2"]
        assert await store.get_task("dashscope", "a0") is None
        assert await store.get_task("dashscope", "bob-1") is not None
        assert await store.count_tasks() == 4
        await store.close()

    run(go)


def test_a_full_store_refuses_and_keeps_every_task(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store(Limits(max_tasks=3)))
        now = store.clock.now()
        for owner in ("a", "b", "c"):
            await store.put_task(task(f"{owner}-1", owner=owner, at=now))
        with pytest.raises(StoreFull, match="--max-tasks"):
            await store.put_task(task("d-1", owner="d", at=now))
        for owner in ("a", "b", "c"):
            assert await store.get_task("dashscope", f"{owner}-1") is not None
        await store.close()

    run(go)


def test_tasks_past_retention_leave_the_index(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store())
        old = await store.put_task(task("old", at=store.clock.now()))
        await store.advance_clock(86400 + 1)
        await store.put_task(task("new", at=store.clock.now()))
        assert [t.id for t in await store.owner_tasks("dashscope", "alice")] == ["new"]
        assert await store.count_tasks() == 1
        assert old.id not in [t.id for t in (await store.page_tasks(None, 0, 10))[0]]
        await store.close()

    run(go)


def test_an_expired_task_leaves_only_a_tombstone(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store(Limits(max_tasks_per_key=1)))
        await store.put_task(task("evicted", owner="bob", at=store.clock.now()))
        await store.put_task(task("bob-2", owner="bob", at=store.clock.now()))
        await store.put_task(task("gone", at=store.clock.now()))
        await store.advance_clock(RETENTION["dashscope"] + 1)
        await store.put_task(task("kept", owner="carol", at=store.clock.now()))
        assert await store.get_task("dashscope", "gone") is None
        assert await store.expired_owner("dashscope", "gone") == "alice"
        assert await store.expired_owner("dashscope", "kept") is None
        assert await store.expired_owner("dashscope", "never") is None
        # An evicted task was not expired: it is simply unknown now, and keeps no tombstone.
        assert await store.expired_owner("dashscope", "evicted") is None
        await store.close()

    run(go)


def test_tasks_page_newest_first(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store())
        now = store.clock.now()
        for i in range(5):
            await store.put_task(task(f"d{i}", at=now + i))
            await store.put_task(task(f"f{i}", provider="anyfast", at=now + i + 0.5))
        page, total = await store.page_tasks(None, 2, 3)
        assert total == 10 and [t.id for t in page] == ["f3", "d3", "f2"]
        page, total = await store.page_tasks("dashscope", 3, 10)
        assert total == 5 and [t.id for t in page] == ["d1", "d0"]
        await store.close()

    run(go)


def test_previous_poll_remembers_the_last_one(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store())
        assert await store.previous_poll("dashscope", "t1", 100.0) is None
        assert await store.previous_poll("dashscope", "t1", 103.5) == 100.0
        assert await store.previous_poll("anyfast", "t1", 104.0) is None
        await store.close()

    run(go)


def test_the_journal_is_bounded_in_bytes_and_reads_newest_first(make_store: MakeStore) -> None:
    async def go() -> None:
        store = await started(make_store(Limits(journal_bytes=4000)))
        for i in range(40):
            await store.journal_append(b'{"n":%d,"pad":"%s"}' % (i, b"x" * 200))
        count, size = await store.journal_size()
        assert size <= 4000 and 10 <= count < 40
        read = await store.journal_read(5)
        assert read[0][1].startswith(b'{"n":39,')
        seqs = [seq for seq, _ in read]
        assert seqs == sorted(seqs, reverse=True) and seqs[0] == 40
        await store.close()

    run(go)


def blob(size: int, owner: str = "alice") -> Blob:
    return Blob(b"x" * size, "image/png", None, owner)


def test_media_caps_count_keys_and_metadata_and_evict_the_owners_oldest(
    make_store: MakeStore,
) -> None:
    async def go() -> None:
        limits = Limits(media_files_per_key=3, media_bytes_per_key=20_000)
        store = await started(make_store(limits))
        await store.put_blob("hosted/bob", blob(10, owner="bob"))
        for i in range(4):
            await store.put_blob(f"uploads/a{i}", blob(10))
        assert await store.get_blob("uploads/a0") is None  # alice's oldest made room
        assert [await store.get_blob(f"uploads/a{i}") is not None for i in (1, 2, 3)] == [True] * 3
        assert await store.get_blob("hosted/bob") is not None
        # Empty files still cost their key and metadata: long keys fill the byte cap.
        long_key = "uploads/" + "k" * 9000
        await store.put_blob(long_key + "1", blob(0))
        await store.put_blob(long_key + "2", blob(0))
        held = [await store.get_blob(f"uploads/a{i}") for i in (1, 2, 3)]
        assert sum(b is not None for b in held) <= 1
        with pytest.raises(StoreFull, match="per-key"):
            await store.put_blob("uploads/huge", blob(30_000))
        await store.close()

    run(go)


def test_media_in_all_is_refused_when_full_and_expires_with_retention(
    make_store: MakeStore,
) -> None:
    async def go() -> None:
        store = await started(make_store(Limits(media_files=2, media_retention=60)))
        await store.put_blob("hosted/1", blob(5, owner="a"))
        await store.put_blob("hosted/2", blob(5, owner="b"))
        with pytest.raises(StoreFull, match="--media-files"):
            await store.put_blob("hosted/3", blob(5, owner="c"))
        assert await store.get_blob("hosted/1") is not None
        await store.advance_clock(61)
        assert await store.get_blob("hosted/1") is None
        await store.put_blob("hosted/3", blob(5, owner="c"))  # expired files made room
        got = await store.get_blob("hosted/3")
        assert got is not None and got.owner == "c" and got.content_type == "image/png"
        await store.close()

    run(go)


def test_reset_forgets_tasks_journal_and_media_but_not_clock_or_secret(
    make_store: MakeStore,
) -> None:
    async def go() -> None:
        store = await started(make_store())
        secret = await store.secret()
        await store.advance_clock(500)
        now = store.clock.now()
        await store.put_task(task("t1", at=now))
        await store.journal_append(b"{}")
        await store.put_blob("hosted/x", blob(3))
        await store.reset()
        assert await store.get_task("dashscope", "t1") is None
        assert await store.journal_size() == (0, 0)
        assert await store.get_blob("hosted/x") is None
        assert await store.secret() == secret
        assert math.isclose(store.clock.now(), now)
        await store.close()

    run(go)


def test_two_redis_workers_share_tasks_clock_and_secret(redis_url: str) -> None:
    async def go() -> None:
        one = RedisStore(redis_url, clock=Clock(speed=0), retention=RETENTION)
        two = RedisStore(redis_url, clock=Clock(speed=0), retention=RETENTION)
        await one.start()
        await two.start()
        assert await one.secret() == await two.secret()
        await one.put_task(task("t1", at=one.clock.now()))
        assert await two.get_task("dashscope", "t1") is not None
        moved = await one.advance_clock(3600)
        # The other worker sees the move with its next command, before it computes a state.
        await two.get_task("dashscope", "t1")
        assert math.isclose(two.clock.now(), moved)
        # A task stored with a clock that moved meanwhile is re-dated to the shared clock.
        await one.advance_clock(60)
        stored = await two.put_task(task("t2", at=two.clock.now() - 60))
        assert math.isclose(stored.created_at, one.clock.now())
        await one.close()
        await two.close()

    run(go)


def test_a_restarted_redis_worker_keeps_the_clock_running(redis_url: str) -> None:
    async def go() -> None:
        first = RedisStore(redis_url, clock=Clock(speed=60), retention=RETENTION)
        await first.start()
        before = first.clock.now()
        await first.close()
        await asyncio.sleep(0.2)
        # A new worker at another speed continues the same timeline instead of restarting it.
        second = RedisStore(redis_url, clock=Clock(speed=1), retention=RETENTION)
        await second.start()
        assert second.clock.now() >= before + 0.2 * 60 * 0.9
        assert second.clock.speed == 1
        await second.close()

    run(go)


def test_redis_keys_expire_with_their_retention(redis_url: str) -> None:
    import redis

    async def go() -> None:
        limits = Limits(media_retention=300)
        store = RedisStore(redis_url, limits, clock=Clock(speed=2), retention={"dashscope": 120})
        await store.start()
        await store.put_task(task("t1", at=store.clock.now()))
        await store.put_blob("hosted/x", blob(3))
        await store.close()

    run(go)
    client = redis.Redis.from_url(redis_url)
    task_ttl, blob_ttl = client.pttl("paddock:t:dashscope:t1"), client.pttl("paddock:b:hosted/x")
    client.close()
    # Virtual seconds at twice the speed: half as many wall seconds.
    assert 0 < task_ttl <= 60_000 and 0 < blob_ttl <= 150_000
