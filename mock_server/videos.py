"""Real, playable MP4 results for the mock upstream.

Clients under test download the "generated" video and often inspect it (probe its size,
check its duration, stream it to a player). A placeholder byte string would let those code
paths go untested, so the mock serves genuine H.264 files whose resolution, frame rate and
duration match what the task asked for.

Rendering is the expensive part (seconds of CPU for a long 1080p clip), so :class:`VideoCache`
renders each shape once, a bounded number at a time, and keeps clips in memory and disk tiers
bounded in bytes. The shapes themselves are few: sizes come from the spec's frame table.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread
import av
from cachetools import LRUCache
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "DEFAULT_MAX_DISK_BYTES",
    "DEFAULT_MAX_MEMORY_BYTES",
    "VideoCache",
    "default_max_renders",
    "render_mp4",
]

_log = logging.getLogger(__name__)

_BACKGROUND: Final = (28, 48, 86)
_SQUARE: Final = (250, 196, 40)
_TEXT: Final = (235, 235, 235)

# Small and fast beats pretty: "stillimage" suits a flat background, CRF 35 keeps files tiny,
# and ultrafast keeps a 1080p/15 s clip within a few seconds on a laptop.
_X264_OPTIONS: Final[dict[str, str]] = {"preset": "ultrafast", "tune": "stillimage", "crf": "35"}

_Shape = tuple[int, int, int, int]

#: Default memory tier: about 400 of the largest clips the specs allow (1080p for 15 s is about
#: 170 KB), more than all the shapes one model can produce.
DEFAULT_MAX_MEMORY_BYTES: Final = 64 * 1024 * 1024
#: Default disk tier, shared by every process using the directory.
DEFAULT_MAX_DISK_BYTES: Final = 1024 * 1024 * 1024

# Only files named like ours are counted and evicted; anything else in the directory is left be.
_CLIP: Final = re.compile(r"\d+x\d+_\d+s_\d+fps\.mp4")
_TEMPORARY: Final = re.compile(r"\.\d+x\d+_\d+s_\d+fps\.mp4\.[^/]+\.tmp")
_STALE_TEMPORARY_SECONDS: Final = 3600.0


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


def default_max_renders() -> int:
    """Renders one process runs at once unless told otherwise: one per CPU it may use, min 1.

    A render is CPU-bound (PyAV releases the GIL while encoding), so more at once only
    makes each one slower.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclass
class _ShapeLock:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class VideoCache:
    """Renders each distinct (width, height, duration, fps) once; memory and optional disk tiers.

    Everything it holds is bounded, each bound a constructor argument:

    - ``max_renders`` renders run at once in this process (default :func:`default_max_renders`).
      Further requests queue without holding a thread, and without a timeout: the largest
      shape a spec allows renders in seconds, and a client waits for it as for a slow CDN.
    - The memory tier keeps at most ``max_memory_bytes`` of clips, least recently used
      evicted first (default 64 MiB; 0 disables it).
    - The disk tier, enabled by ``directory``, survives restarts and is shared by every
      process using the directory: files appear only by atomic rename, reading one touches
      its mtime, and after each write the least recently used are deleted until this cache's
      files total at most ``max_disk_bytes`` (default 1 GiB). Files not named like its own
      are neither counted nor touched.

    Concurrent requests for one shape wait for a single render instead of each rendering it.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        max_memory_bytes: int = DEFAULT_MAX_MEMORY_BYTES,
        max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES,
        max_renders: int | None = None,
    ) -> None:
        renders = default_max_renders() if max_renders is None else max_renders
        if renders < 1:
            raise ValueError(f"max_renders must be at least 1, got {renders}")
        if max_memory_bytes < 0:
            raise ValueError(f"max_memory_bytes must be >= 0, got {max_memory_bytes}")
        if max_disk_bytes < 0:
            raise ValueError(f"max_disk_bytes must be >= 0, got {max_disk_bytes}")
        self._directory = directory
        self._max_disk_bytes = max_disk_bytes
        self._max_renders = renders
        self._memory: LRUCache[_Shape, bytes] = LRUCache(max_memory_bytes, getsizeof=len)
        self._lock = threading.Lock()
        # Held while a shape renders, so others asking for it wait; dropped when unused.
        self._shape_locks: dict[_Shape, _ShapeLock] = {}
        # The hard bound, whoever calls (threads using get, or aget on any event loop).
        self._renders = threading.BoundedSemaphore(renders)
        # aget queues here, on the event loop: only max_renders worker threads are ever busy
        # with videos, and anyio's shared thread pool stays free for the rest of the app.
        self._slots = anyio.CapacityLimiter(renders)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._evict()  # the cap may have been lowered since the files were written

    @property
    def directory(self) -> Path | None:
        """Where rendered clips are persisted, or ``None`` for a memory-only cache."""
        return self._directory

    @property
    def max_renders(self) -> int:
        """How many renders this cache runs at once."""
        return self._max_renders

    def get(self, width: int, height: int, duration: int, fps: int = 24) -> bytes:
        """Return the MP4 for this shape, rendering it only if no tier has it yet."""
        _check_shape(width, height, duration, fps)
        shape = (width, height, duration, fps)
        cached = self._recall(shape)
        if cached is not None:
            return cached
        return self._load(shape)

    async def aget(self, width: int, height: int, duration: int, fps: int = 24) -> bytes:
        """Async :meth:`get`: a memory hit answers at once; anything else runs in a thread."""
        _check_shape(width, height, duration, fps)
        shape = (width, height, duration, fps)
        cached = self._recall(shape)
        if cached is not None:
            return cached
        async with self._slots:
            # Rendered by another request while this one queued?
            cached = self._recall(shape)
            if cached is not None:
                return cached
            return await anyio.to_thread.run_sync(self._load, shape)

    def _load(self, shape: _Shape) -> bytes:
        with self._shape_lock(shape):
            # Another thread may have rendered it while we waited for the lock.
            cached = self._recall(shape)
            if cached is not None:
                return cached
            data = self._read_disk(shape)
            if data is None:
                width, height, duration, fps = shape
                label = f"paddock {width}x{height} {duration}s {fps}fps"
                with self._renders:
                    data = render_mp4(width, height, duration, fps, label=label)
                self._write_disk(shape, data)
            self._remember(shape, data)
            return data

    @contextmanager
    def _shape_lock(self, shape: _Shape) -> Iterator[None]:
        with self._lock:
            entry = self._shape_locks.setdefault(shape, _ShapeLock())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._lock:
                entry.users -= 1
                if not entry.users:
                    del self._shape_locks[shape]

    def _recall(self, shape: _Shape) -> bytes | None:
        with self._lock:
            return self._memory.get(shape)

    def _remember(self, shape: _Shape, data: bytes) -> None:
        if len(data) > self._memory.maxsize:
            return  # larger than the whole tier (or the tier is off): serve it, keep nothing
        with self._lock:
            self._memory[shape] = data

    def _read_disk(self, shape: _Shape) -> bytes | None:
        if self._directory is None:
            return None
        path = self._directory / _file_name(shape)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("ignoring unreadable cached video for %s: %s", shape, exc)
            return None
        if not data:
            return None
        # Mark it used, so eviction (in any process, or after a restart) keeps it longer.
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def _write_disk(self, shape: _Shape, data: bytes) -> None:
        if self._directory is None or len(data) > self._max_disk_bytes:
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
            return
        self._evict()

    def _evict(self) -> None:
        """Delete least recently used clips until this cache's files fit ``max_disk_bytes``."""
        assert self._directory is not None
        clips: list[tuple[float, str, int]] = []
        now = time.time()
        try:
            with os.scandir(self._directory) as entries:
                for entry in entries:
                    ours, temporary = _CLIP.fullmatch(entry.name), _TEMPORARY.fullmatch(entry.name)
                    if not (ours or temporary):
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # another process evicted it meanwhile
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    if ours:
                        clips.append((info.st_mtime, entry.name, info.st_size))
                    elif now - info.st_mtime > _STALE_TEMPORARY_SECONDS:
                        # Left by a writer that died mid-write; a live write takes seconds.
                        self._unlink(entry.name)
        except OSError as exc:
            _log.warning("could not scan the video cache %s: %s", self._directory, exc)
            return
        total = sum(size for _, _, size in clips)
        for _, name, size in sorted(clips):
            if total <= self._max_disk_bytes:
                break
            if self._unlink(name):
                total -= size

    def _unlink(self, name: str) -> bool:
        assert self._directory is not None
        try:
            (self._directory / name).unlink(missing_ok=True)  # several workers may evict it
        except OSError as exc:
            _log.warning("could not evict %s from the video cache: %s", name, exc)
            return False
        return True
