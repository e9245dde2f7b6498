"""Mock result videos: real H.264 files of the requested shape, rendered once per shape."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from pathlib import Path

import av
import pytest

from contracts.spec import SpecSet
from mock_server import videos
from mock_server.videos import VideoCache, render_mp4
from tests.conftest import Mock, png_uri


class CountingRenderer:
    """Stands in for render_mp4 so cache tests measure caching, not encoding."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, width: int, height: int, duration: int, fps: int = 24, **_: str) -> bytes:
        with self._lock:
            self.calls.append((width, height, duration, fps))
        time.sleep(self.delay)
        return f"mp4 {width}x{height} {duration}s {fps}fps".encode()


@pytest.fixture
def renderer(monkeypatch: pytest.MonkeyPatch) -> CountingRenderer:
    fake = CountingRenderer()
    monkeypatch.setattr(videos, "render_mp4", fake)
    return fake


def test_render_mp4_produces_the_requested_h264_clip() -> None:
    data = render_mp4(640, 360, 2)

    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        decoded = len(list(container.decode(stream)))
        assert container.format.name.startswith("mov,mp4")
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 24
        assert (stream.width, stream.height) == (640, 360)
        assert stream.frames == decoded == 48
        assert container.duration is not None
        assert container.duration / av.time_base == pytest.approx(2.0, abs=0.05)
    # faststart: the index precedes the media data, so players can stream it.
    assert data.index(b"moov") < data.index(b"mdat")


def luma(frame: av.VideoFrame, x: int, y: int) -> int:
    plane = frame.planes[0]
    return bytes(plane)[y * plane.line_size + x]


def test_render_mp4_honours_fps_and_shows_a_moving_square() -> None:
    data = render_mp4(160, 90, 1, fps=10)

    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.average_rate == 10
    assert len(frames) == 10
    first, last = frames[0], frames[-1]
    # The square (bright yellow on dark blue) starts at the left edge and ends at the right.
    assert luma(first, 4, 45) > 150 > luma(last, 4, 45)
    assert luma(last, 155, 45) > 150 > luma(first, 155, 45)


@pytest.mark.parametrize(
    ("width", "height", "duration", "fps"),
    [(641, 360, 1, 24), (640, 361, 1, 24), (0, 360, 1, 24), (-2, 360, 1, 24), (64, 36, 0, 24)],
)
def test_render_mp4_rejects_impossible_shapes(
    width: int, height: int, duration: int, fps: int
) -> None:
    with pytest.raises(ValueError):
        render_mp4(width, height, duration, fps)


def test_cache_renders_each_shape_once(renderer: CountingRenderer) -> None:
    cache = VideoCache()

    first = cache.get(64, 36, 1)
    again = cache.get(64, 36, 1)
    other = cache.get(64, 36, 2)

    assert first is again
    assert other != first
    assert renderer.calls == [(64, 36, 1, 24), (64, 36, 2, 24)]


def test_concurrent_requests_for_one_shape_share_a_single_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = CountingRenderer(delay=0.1)
    monkeypatch.setattr(videos, "render_mp4", slow)
    cache = VideoCache()
    results: list[bytes] = []

    threads = [
        threading.Thread(target=lambda: results.append(cache.get(64, 36, 1))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(slow.calls) == 1
    assert len(set(results)) == 1 and len(results) == 8


class SizedRenderer:
    """Stands in for render_mp4 with clips of a fixed byte size, for the tiers' byte caps."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls: list[tuple[int, int, int, int]] = []

    def __call__(self, width: int, height: int, duration: int, fps: int = 24, **_: str) -> bytes:
        self.calls.append((width, height, duration, fps))
        return f"{width}x{height} {duration}s".encode().ljust(self.size, b".")


def test_memory_tier_is_bounded_in_bytes_least_recently_used_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renderer = SizedRenderer(100)
    monkeypatch.setattr(videos, "render_mp4", renderer)
    cache = VideoCache(max_memory_bytes=250)  # room for two 100-byte clips, not three

    cache.get(64, 36, 1)
    cache.get(64, 36, 2)
    cache.get(64, 36, 1)  # a hit: now 2 s is the least recently used
    cache.get(64, 36, 3)  # evicts 2 s
    assert len(renderer.calls) == 3
    cache.get(64, 36, 1)
    cache.get(64, 36, 3)
    assert len(renderer.calls) == 3
    cache.get(64, 36, 2)
    assert renderer.calls[-1] == (64, 36, 2, 24)
    assert len(renderer.calls) == 4


def test_a_clip_larger_than_the_memory_tier_is_served_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renderer = SizedRenderer(300)
    monkeypatch.setattr(videos, "render_mp4", renderer)
    cache = VideoCache(max_memory_bytes=250)

    assert len(cache.get(64, 36, 1)) == 300
    assert len(cache.get(64, 36, 1)) == 300
    assert len(renderer.calls) == 2
    off = VideoCache(max_memory_bytes=0)
    off.get(64, 36, 1)
    off.get(64, 36, 1)
    assert len(renderer.calls) == 4


def test_disk_cache_is_reused_by_a_fresh_instance(
    tmp_path: Path, renderer: CountingRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = VideoCache(tmp_path).get(64, 36, 1)
    assert [p.name for p in tmp_path.iterdir()] == ["64x36_1s_24fps.mp4"]

    def must_not_render(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the disk cache should have been used")

    monkeypatch.setattr(videos, "render_mp4", must_not_render)
    assert VideoCache(tmp_path).get(64, 36, 1) == data
    assert len(renderer.calls) == 1


def test_cache_validates_shapes_before_rendering(renderer: CountingRenderer) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoCache().get(63, 36, 1)
    assert renderer.calls == []


def test_aget_renders_a_real_clip_off_the_event_loop() -> None:
    cache = VideoCache()

    data = asyncio.run(cache.aget(64, 36, 1, fps=12))

    with av.open(io.BytesIO(data), "r") as container:
        assert container.streams.video[0].frames == 12


def test_aget_does_not_block_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(videos, "render_mp4", CountingRenderer(delay=0.3))
    cache = VideoCache()
    finished: list[str] = []

    async def render() -> None:
        await cache.aget(64, 36, 1)
        finished.append("render")

    async def ticker() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)
        finished.append("ticker")

    async def scenario() -> None:
        await asyncio.gather(render(), ticker())

    asyncio.run(scenario())

    # Had the render run on the loop, the ticker could only start after it returned.
    assert finished == ["ticker", "render"]


# -- disk tier: bounded in bytes, least recently used evicted, shared between processes ---------


def _clip(width: int, duration: int = 1) -> str:
    return f"{width}x36_{duration}s_24fps.mp4"


def _age(path: Path, seconds_ago: float) -> None:
    then = time.time() - seconds_ago
    os.utime(path, (then, then))


def test_disk_tier_evicts_the_least_recently_used_clips_by_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(videos, "render_mp4", SizedRenderer(100))
    cache = VideoCache(tmp_path, max_disk_bytes=250, max_memory_bytes=0)
    cache.get(64, 36, 1)
    cache.get(96, 36, 1)
    # Written a while ago, 64 first; file times are too coarse to order back-to-back writes.
    _age(tmp_path / _clip(64), 200)
    _age(tmp_path / _clip(96), 100)

    # Another worker (or this one after a restart) reads 64: that use is what counts.
    VideoCache(tmp_path, max_disk_bytes=250, max_memory_bytes=0).get(64, 36, 1)
    cache.get(128, 36, 1)  # 300 bytes on disk: the least recently used (96) goes

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([_clip(64), _clip(128)])


def test_disk_eviction_leaves_foreign_files_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(videos, "render_mp4", SizedRenderer(100))
    foreign = {"notes.txt": 10_000, "64x36_1s_24fps.mp4.bak": 10_000, "holiday.mp4": 10_000}
    for name, size in foreign.items():
        (tmp_path / name).write_bytes(b"x" * size)
        _age(tmp_path / name, 10_000)
    (tmp_path / "sub").mkdir()
    stale = tmp_path / f".{_clip(32)}.abc123.tmp"  # a writer died mid-write long ago
    stale.write_bytes(b"x" * 50)
    _age(stale, 2 * 3600)
    live = tmp_path / f".{_clip(48)}.def456.tmp"  # another worker is writing it now
    live.write_bytes(b"x" * 50)

    cache = VideoCache(tmp_path, max_disk_bytes=250, max_memory_bytes=0)
    for width in (64, 96):
        cache.get(width, 36, 1)

    # Foreign files neither count against the cap (both clips stay) nor get deleted.
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {*foreign, "sub", live.name, _clip(64), _clip(96)}


def test_a_lowered_disk_cap_applies_when_the_cache_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(videos, "render_mp4", SizedRenderer(100))
    cache = VideoCache(tmp_path, max_memory_bytes=0)
    for age, width in enumerate((64, 96, 128)):
        cache.get(width, 36, 1)
        _age(tmp_path / _clip(width), 100 - age)

    VideoCache(tmp_path, max_disk_bytes=100)

    assert [p.name for p in tmp_path.iterdir()] == [_clip(128)]


def test_a_clip_larger_than_the_disk_cap_is_served_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(videos, "render_mp4", SizedRenderer(300))
    cache = VideoCache(tmp_path, max_disk_bytes=250)

    assert len(cache.get(64, 36, 1)) == 300
    assert list(tmp_path.iterdir()) == []


# -- render concurrency -------------------------------------------------------------------------


class GatedRenderer:
    """Counts renders in flight; each waits until ``bound`` run together (or none are left).

    Waiting for company makes the peak reach the bound whatever the scheduling; ``linger``
    seconds more at the bound give a render that ignores it time to pile in (a window for a
    failure to show, never a timed assertion).
    """

    def __init__(self, bound: int, total: int, linger: float = 0.0) -> None:
        self.bound = bound
        self.total = total
        self.linger = linger
        self.started = 0
        self.running = 0
        self.peak = 0
        self.peak_threads = 0
        self._cond = threading.Condition()

    def __call__(self, width: int, height: int, duration: int, fps: int = 24, **_: str) -> bytes:
        with self._cond:
            self.started += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.peak_threads = max(self.peak_threads, threading.active_count())
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self.running >= self.bound or self.started == self.total, timeout=10
            )
            self._cond.wait_for(lambda: self.running > self.bound, timeout=self.linger)
            self.running -= 1
        return f"{width}x{height}".encode()


def test_a_burst_of_distinct_shapes_renders_at_most_max_renders_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shapes = [(2 * (i + 1), 36, 1) for i in range(100)]
    renderer = GatedRenderer(bound=2, total=len(shapes))
    monkeypatch.setattr(videos, "render_mp4", renderer)
    cache = VideoCache(max_renders=2)
    threads_before = 0

    async def burst() -> list[bytes]:
        nonlocal threads_before
        threads_before = threading.active_count()
        return await asyncio.gather(*(cache.aget(*shape) for shape in shapes))

    results = asyncio.run(burst())

    assert results == [f"{w}x{h}".encode() for w, h, _ in shapes]
    assert renderer.started == 100
    assert renderer.peak == 2
    # Waiting requests hold no thread: at most two worker threads joined the loop's.
    assert renderer.peak_threads <= threads_before + 2


def test_threads_calling_get_share_the_same_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = GatedRenderer(bound=3, total=12, linger=0.1)
    monkeypatch.setattr(videos, "render_mp4", renderer)
    cache = VideoCache(max_renders=3)

    threads = [threading.Thread(target=cache.get, args=(2 * (i + 1), 36, 1)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert renderer.started == 12
    assert renderer.peak == 3


def test_default_bound_is_one_render_per_cpu() -> None:
    assert VideoCache().max_renders == videos.default_max_renders() >= 1
    with pytest.raises(ValueError, match="max_renders"):
        VideoCache(max_renders=0)
    with pytest.raises(ValueError, match="max_memory_bytes"):
        VideoCache(max_memory_bytes=-1)
    with pytest.raises(ValueError, match="max_disk_bytes"):
        VideoCache(max_disk_bytes=-1)


# -- end to end: a portrait first frame and no ratio ---------------------------------------------


def _mp4_size(data: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height, stream.frames


def test_a_portrait_first_frame_gets_a_portrait_row_and_reports_its_ratio(mock: Mock) -> None:
    body = {
        "model": "happyhorse-1.0-i2v",
        "prompt": "x",
        "image": png_uri(400, 700),  # 0.571: nearest named ratio 9:16
        "resolution": "720P",
        "duration": 3,
    }
    created = mock.create("anyfast", body)
    assert created.status_code == 200, created.text
    mock.advance(60)
    final = mock.query("anyfast", created.json()["id"]).json()

    assert final["data"]["status"] == "SUCCESS"
    assert final["data"]["data"]["usage"]["ratio"] == "9:16"
    video = mock.client.get(final["data"]["result_url"])
    assert video.status_code == 200
    assert _mp4_size(video.content) == (720, 1280, 72)


def test_every_video_a_model_serves_is_a_table_row(mock: Mock, specs: SpecSet) -> None:
    # DashScope's query shape reports no ratio; its videos still come from the table.
    body = {
        "model": "wan2.7-i2v",
        "input": {"media": [{"type": "first_frame", "url": png_uri(700, 640)}]},
        "parameters": {"resolution": "720P", "duration": 2},
    }
    created = mock.create("dashscope", body)
    assert created.status_code == 200, created.text
    mock.advance(60)
    final = mock.query("dashscope", created.json()["output"]["task_id"]).json()

    video = mock.client.get(final["output"]["video_url"])
    width, height, _ = _mp4_size(video.content)
    assert (width, height) == specs["dashscope"].frames.size("720P", "1:1")  # 1.09: nearest 1:1
