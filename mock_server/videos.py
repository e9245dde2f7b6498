"""Real, playable MP4 results for the mock upstream.

Clients under test download the "generated" video and often inspect it (probe its size,
check its duration, stream it to a player). A placeholder byte string would let those code
paths go untested, so the mock serves genuine H.264 files whose resolution, frame rate and
duration match what the task asked for.

Rendering is the expensive part, so :class:`VideoCache` renders each shape once and shares it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Final

import anyio.to_thread
import av
from PIL import Image, ImageDraw, ImageFont

__all__ = ["VideoCache", "render_mp4"]

_log = logging.getLogger(__name__)

_BACKGROUND: Final = (28, 48, 86)
_SQUARE: Final = (250, 196, 40)
_TEXT: Final = (235, 235, 235)

# Small and fast beats pretty: "stillimage" suits a flat background, CRF 35 keeps files tiny,
# and ultrafast keeps a 1080p/15 s clip within a few seconds on a laptop.
_X264_OPTIONS: Final[dict[str, str]] = {"preset": "ultrafast", "tune": "stillimage", "crf": "35"}

_Shape = tuple[int, int, int, int]


def _check_shape(width: int, height: int, duration: int, fps: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"video size must be positive, got {width}x{height}")
    if width % 2 or height % 2:
        # yuv420p subsamples chroma 2x2, so libx264 refuses odd dimensions.
        raise ValueError(f"video width and height must be even, got {width}x{height}")
    if duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")


def _to_yuv420p(image: Image.Image) -> av.VideoFrame:
    # PyAV's stub leaves from_image unannotated; this wrapper confines the untyped call.
    frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame.reformat(format="yuv420p")


def _yuv_planes(image: Image.Image) -> list[bytes]:
    """Convert an RGB image to yuv420p plane buffers laid out like a fresh ``VideoFrame``.

    The returned buffers can be copied into each new frame with ``Plane.update``; converting
    once and copying is several times faster than converting every frame from RGB.
    """
    converted = _to_yuv420p(image)
    template = av.VideoFrame(image.width, image.height, "yuv420p")
    planes: list[bytes] = []
    for src, dst in zip(converted.planes, template.planes, strict=True):
        # Row padding (line_size) can differ between the converter's output and a freshly
        # allocated frame, so copy row by row rather than assuming identical layouts.
        out = bytearray(dst.buffer_size)
        with memoryview(src) as view:
            for row in range(src.height):
                s, d = row * src.line_size, row * dst.line_size
                out[d : d + src.width] = view[s : s + src.width]
        planes.append(bytes(out))
    return planes


def _yuv_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    # Convert through the same swscale path as the background so the colours agree exactly.
    frame = _to_yuv420p(Image.new("RGB", (2, 2), rgb))
    y, u, v = (bytes(plane)[0] for plane in frame.planes)
    return y, u, v


def _background(width: int, height: int, label: str) -> Image.Image:
    image = Image.new("RGB", (width, height), _BACKGROUND)
    if label:
        size = max(10, height // 18)
        font = ImageFont.load_default(size=size)
        ImageDraw.Draw(image).text((size // 2, size // 2), label, fill=_TEXT, font=font)
    return image


def _paint_square(frame: av.VideoFrame, x: int, y: int, side: int, yuv: tuple[int, ...]) -> None:
    # Luma at full resolution, chroma at half: x, y and side are even so both align.
    for plane, value, scale in zip(frame.planes, yuv, (1, 2, 2), strict=True):
        px, py, ps = x // scale, y // scale, side // scale
        row = bytes((value,)) * ps
        with memoryview(plane) as view:
            for r in range(py, py + ps):
                start = r * plane.line_size + px
                view[start : start + ps] = row


def _encode(path: str, width: int, height: int, duration: int, fps: int, label: str) -> None:
    background = _yuv_planes(_background(width, height, label))
    square = _yuv_colour(_SQUARE)
    side = max(2, min(width, height) // 6 & ~1)
    frames = duration * fps
    time_base = Fraction(1, fps)

    # faststart moves the moov atom to the front so clients can start playback while
    # downloading; FFmpeg does that by re-reading the output, hence a real file, not BytesIO.
    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(_X264_OPTIONS))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane, data in zip(frame.planes, background, strict=True):
                plane.update(data)
            # Slide left to right across the clip, so progress is visible when scrubbing.
            progress = index / (frames - 1) if frames > 1 else 0.0
            x = round(progress * (width - side)) & ~1
            y = (height - side) // 2 & ~1
            _paint_square(frame, x, y, side, square)
            frame.pts = index
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def render_mp4(width: int, height: int, duration: int, fps: int = 24, *, label: str = "") -> bytes:
    """Render an H.264/MP4 clip of exactly ``duration * fps`` frames at ``fps`` frames/second.

    The picture is a flat background (with ``label`` drawn top-left, if given) and a small
    square sliding across it: cheap to encode, yet visibly a moving video. ``width`` and
    ``height`` must be positive and even (a yuv420p requirement).
    """
    _check_shape(width, height, duration, fps)
    with tempfile.TemporaryDirectory(prefix="paddock-render-") as tmp:
        path = os.path.join(tmp, "render.mp4")
        _encode(path, width, height, duration, fps, label)
        return Path(path).read_bytes()


def _file_name(shape: _Shape) -> str:
    width, height, duration, fps = shape
    return f"{width}x{height}_{duration}s_{fps}fps.mp4"


class VideoCache:
    """Renders each distinct (width, height, duration, fps) once; memory + optional on-disk cache.

    The memory tier is a small LRU (``max_memory_items`` clips; 0 disables it). The disk tier,
    enabled by passing ``directory``, survives restarts and is safe to share between processes
    because files only appear via an atomic rename. Concurrent requests for the same shape
    wait for one render instead of each burning CPU on an identical clip; different shapes
    render in parallel.
    """

    def __init__(self, directory: Path | None = None, max_memory_items: int = 16) -> None:
        if max_memory_items < 0:
            raise ValueError(f"max_memory_items must be >= 0, got {max_memory_items}")
        self._directory = directory
        self._max_memory_items = max_memory_items
        self._memory: OrderedDict[_Shape, bytes] = OrderedDict()
        self._lock = threading.Lock()
        # One lock per shape ever requested; the set of shapes a mock serves is small.
        self._shape_locks: dict[_Shape, threading.Lock] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def directory(self) -> Path | None:
        """Where rendered clips are persisted, or ``None`` for a memory-only cache."""
        return self._directory

    def get(self, width: int, height: int, duration: int, fps: int = 24) -> bytes:
        """Return the MP4 for this shape, rendering it only if no tier has it yet."""
        _check_shape(width, height, duration, fps)
        shape = (width, height, duration, fps)
        cached = self._recall(shape)
        if cached is not None:
            return cached
        with self._lock:
            shape_lock = self._shape_locks.setdefault(shape, threading.Lock())
        with shape_lock:
            # Another thread may have rendered it while we waited for the lock.
            cached = self._recall(shape)
            if cached is not None:
                return cached
            data = self._read_disk(shape)
            if data is None:
                label = f"paddock {width}x{height} {duration}s {fps}fps"
                data = render_mp4(width, height, duration, fps, label=label)
                self._write_disk(shape, data)
            self._remember(shape, data)
            return data

    async def aget(self, width: int, height: int, duration: int, fps: int = 24) -> bytes:
        """Async :meth:`get`: rendering takes seconds, so it runs in a worker thread."""
        return await anyio.to_thread.run_sync(self.get, width, height, duration, fps)

    def _recall(self, shape: _Shape) -> bytes | None:
        with self._lock:
            data = self._memory.get(shape)
            if data is not None:
                self._memory.move_to_end(shape)
            return data

    def _remember(self, shape: _Shape, data: bytes) -> None:
        if not self._max_memory_items:
            return
        with self._lock:
            self._memory[shape] = data
            self._memory.move_to_end(shape)
            while len(self._memory) > self._max_memory_items:
                self._memory.popitem(last=False)

    def _read_disk(self, shape: _Shape) -> bytes | None:
        if self._directory is None:
            return None
        try:
            data = (self._directory / _file_name(shape)).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("ignoring unreadable cached video for %s: %s", shape, exc)
            return None
        return data or None

    def _write_disk(self, shape: _Shape, data: bytes) -> None:
        if self._directory is None:
            return
        target = self._directory / _file_name(shape)
        try:
            fd, tmp = tempfile.mkstemp(
                dir=self._directory, prefix=f".{target.name}.", suffix=".tmp"
            )
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            # The cache is an optimisation: a full or read-only disk must not fail the
            # request that already has its video in hand.
            _log.warning("could not cache rendered video at %s: %s", target, exc)
