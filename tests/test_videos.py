"""Mock result videos: real H.264 files of the requested shape, rendered once per shape."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path

import av
import pytest

from mock_server import videos
from mock_server.videos import VideoCache, render_mp4


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


def test_memory_tier_evicts_least_recently_used(renderer: CountingRenderer) -> None:
    cache = VideoCache(max_memory_items=1)

    cache.get(64, 36, 1)
    cache.get(64, 36, 2)
    cache.get(64, 36, 1)

    assert len(renderer.calls) == 3


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
