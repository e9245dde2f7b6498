"""Identify media payloads by decoding their headers, not by trusting names or MIME types.

Video-generation APIs reject inputs for reasons a filename cannot reveal: a PNG cut off
mid-upload, a JPEG renamed to ``.png``, a ``data:`` URI whose base64 is mangled. The mock
upstream uses :func:`probe` to validate what clients send, and clients use :func:`probe_file`
to catch the same problems before spending a request. Both share this module so the two sides
can never disagree about what counts as valid media.

Images go through Pillow (header plus integrity checks, no full decode, so probing stays
cheap); anything Pillow does not recognise goes through PyAV, restricted to a whitelist of
ordinary audio/video containers.
"""

from __future__ import annotations

import base64
import binascii
import io
import mmap
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import IO, Final, Literal

import av
from PIL import Image, TiffImagePlugin

__all__ = [
    "MediaError",
    "MediaInfo",
    "MediaKind",
    "decode_data_uri",
    "probe",
    "probe_file",
]

MediaKind = Literal["image", "audio", "video"]

# A buffer we can search without copying: bytes for payloads, mmap for files on disk.
_Buffer = bytes | mmap.mmap


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a payload really is, as decoded from its bytes.

    ``format`` is a short lowercase name ("png", "wav", "mp4") so that contract rules can
    compare it against an API's allow-list without knowing Pillow's or FFmpeg's spelling.
    """

    kind: MediaKind
    format: str
    bytes: int
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    mime: str | None = None

    @property
    def aspect(self) -> float | None:
        """Width divided by height; ``None`` when either is unknown (e.g. audio)."""
        if self.width is None or not self.height:
            return None
        return self.width / self.height

    def summary(self) -> dict[str, object]:
        """A JSON-serialisable record for request journals.

        Every key is always present (``None`` when unknown) so that journal consumers can rely
        on a fixed shape; floats are rounded so journals diff cleanly between runs.
        """
        aspect = self.aspect
        return {
            "kind": self.kind,
            "format": self.format,
            "mime": self.mime,
            "bytes": self.bytes,
            "width": self.width,
            "height": self.height,
            "aspect": None if aspect is None else round(aspect, 4),
            "duration": None if self.duration is None else round(self.duration, 3),
        }


class MediaError(ValueError):
    """The bytes are not media we can decode; the message says what was wrong in one sentence."""


# --------------------------------------------------------------------------- images

# Only formats that video-generation APIs plausibly accept. Letting Pillow try all of its
# plugins would accept odd formats (TGA, PCX, EPS via Ghostscript...) and some of them have
# loose signatures that match random bytes.
_PILLOW_FORMATS: Final = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "AVIF")

_IMAGE_FORMATS: Final[dict[str, str]] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "BMP": "bmp",
    "DIB": "bmp",
    "WEBP": "webp",
    "GIF": "gif",
    "TIFF": "tiff",
    "AVIF": "avif",
}

_IMAGE_MIME: Final[dict[str, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "bmp": "image/bmp",
    "webp": "image/webp",
    "gif": "image/gif",
    "tiff": "image/tiff",
    "avif": "image/avif",
}

# Used only to word the error when Pillow rejects a file that clearly claims to be an image,
# so the caller hears "corrupt png image" instead of a generic "unsupported file".
_IMAGE_SIGNATURES: Final[tuple[tuple[bytes, int, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF8", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"WEBP", 8, "webp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)

# TIFF tags locating pixel data: StripOffsets/StripByteCounts and TileOffsets/TileByteCounts.
_TIFF_EXTENTS: Final = ((273, 279), (324, 325))


def _claimed_image_format(data: _Buffer) -> str | None:
    for magic, offset, name in _IMAGE_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _check_complete(im: Image.Image, fmt: str, data: _Buffer) -> None:
    """Catch truncation that ``Image.verify`` misses, without decoding pixels.

    Pillow's ``verify`` only does real work for PNG (chunk CRCs up to IEND); for the other
    formats it is a no-op, so a half-uploaded JPEG or BMP would pass. These checks read only
    container structure, which keeps probing fast while still rejecting cut-off uploads.
    """
    size = len(data)
    if fmt == "png":
        # verify() stops at the IEND chunk type without reading its CRC, so a file cut
        # inside those last four bytes would pass; IEND's CRC is a constant, so look for it.
        if data.rfind(b"IEND\xaeB`\x82") < 0:
            raise MediaError("truncated png image: the IEND end chunk is missing")
    elif fmt == "jpeg":
        # Entropy-coded data escapes 0xFF as FF 00, so an FF D9 after the first
        # start-of-scan can only be the end-of-image marker. EOI markers of an EXIF
        # thumbnail sit before the first scan and do not count.
        sos = data.find(b"\xff\xda")
        if sos < 0 or data.rfind(b"\xff\xd9") < sos:
            raise MediaError("truncated jpeg image: the end-of-image marker is missing")
    elif fmt == "webp":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > size:
            raise MediaError(
                f"truncated webp image: header declares {declared} bytes but only {size} arrived"
            )
    elif fmt == "tiff" and isinstance(im, TiffImagePlugin.TiffImageFile):
        for offsets_tag, counts_tag in _TIFF_EXTENTS:
            offsets = im.tag_v2.get(offsets_tag)
            counts = im.tag_v2.get(counts_tag)
            if isinstance(offsets, tuple) and isinstance(counts, tuple):
                end = max((o + c for o, c in zip(offsets, counts, strict=False)), default=0)
                if end > size:
                    raise MediaError(
                        f"truncated tiff image: pixel data runs to byte {end} "
                        f"but only {size} arrived"
                    )

    for tile in getattr(im, "tile", ()):
        end = tile.offset
        # Uncompressed tiles (BMP, some TIFF) state their row stride, so their exact extent
        # is known without decoding.
        if tile.codec_name == "raw" and isinstance(tile.args, tuple) and len(tile.args) > 1:
            stride = tile.args[1]
            if isinstance(stride, int) and stride > 0:
                end += stride * (tile.extents[3] - tile.extents[1])
        if end > size:
            raise MediaError(
                f"truncated {fmt} image: pixel data runs to byte {end} but only {size} arrived"
            )


def _probe_image(source: IO[bytes], data: _Buffer) -> MediaInfo | None:
    """Return image info, ``None`` if Pillow does not recognise the bytes at all."""
    try:
        im = Image.open(source, formats=_PILLOW_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(f"image rejected as a possible decompression bomb: {exc}") from exc
    except Exception:
        # Unrecognised or unparseable header: maybe it is audio/video; PyAV gets a turn.
        return None

    with im:
        raw_format = im.format or ""
        fmt = _IMAGE_FORMATS.get(raw_format, raw_format.lower())
        width, height = im.size
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; enforce the limit
        # ourselves so the verdict does not depend on the process's warning filters.
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and width * height > limit:
            raise MediaError(
                f"image rejected as a possible decompression bomb: {width}x{height} exceeds "
                f"the {limit}-pixel limit"
            )
        if width <= 0 or height <= 0:
            raise MediaError(f"corrupt {fmt} image: it declares a {width}x{height} size")
        try:
            _check_complete(im, fmt, data)
            # verify() must come straight after open and leaves the image unusable, which is
            # fine: format and size were read above and nothing else is needed.
            im.verify()
        except MediaError:
            raise
        except Exception as exc:
            raise MediaError(f"truncated or corrupt {fmt} image: {exc}") from exc

    return MediaInfo(
        kind="image",
        format=fmt,
        bytes=len(data),
        width=width,
        height=height,
        mime=_IMAGE_MIME.get(fmt, f"image/{fmt}"),
    )


# --------------------------------------------------------------------------- audio / video

# FFmpeg demuxers we accept. Without this whitelist FFmpeg would happily "probe" PNGs as
# png_pipe videos, and playlist demuxers (hls, concat) could open further URLs or local
# files named inside an uploaded payload.
_DEMUXERS: Final = (
    "mov",
    "matroska",
    "webm",
    "avi",
    "flv",
    "mpegts",
    "wav",
    "w64",
    "mp3",
    "aac",
    "flac",
    "ogg",
    "aiff",
    "caf",
    "amr",
)
_AV_OPTIONS: Final[dict[str, str]] = {"format_whitelist": ",".join(_DEMUXERS)}

# FFmpeg names some demuxers after a whole family ("mov,mp4,m4a,3gp,3g2,mj2"); callers want
# one short name. The mov/mp4 family is reported as "mp4" whatever its brand.
_CONTAINER_NAMES: Final[dict[str, str]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "mpegts": "ts",
}

_WEBM_CODECS: Final = frozenset({"vp8", "vp9", "av1", "opus", "vorbis"})

_AV_MIME: Final[dict[tuple[str, str], str]] = {
    ("video", "mp4"): "video/mp4",
    ("audio", "mp4"): "audio/mp4",
    ("video", "webm"): "video/webm",
    ("audio", "webm"): "audio/webm",
    ("video", "mkv"): "video/x-matroska",
    ("audio", "mkv"): "audio/x-matroska",
    ("video", "avi"): "video/x-msvideo",
    ("video", "flv"): "video/x-flv",
    ("video", "ts"): "video/mp2t",
    ("video", "ogg"): "video/ogg",
    ("audio", "ogg"): "audio/ogg",
    ("audio", "wav"): "audio/wav",
    ("audio", "w64"): "audio/x-w64",
    ("audio", "mp3"): "audio/mpeg",
    ("audio", "aac"): "audio/aac",
    ("audio", "flac"): "audio/flac",
    ("audio", "aiff"): "audio/aiff",
    ("audio", "caf"): "audio/x-caf",
    ("audio", "amr"): "audio/amr",
}

_UNSUPPORTED = "not a supported image, audio or video file"


def _container_format(container: av.container.InputContainer) -> str:
    name = container.format.name
    if name == "matroska,webm":
        codecs = {s.codec_context.name for s in container.streams if s.codec_context is not None}
        return "webm" if codecs and codecs <= _WEBM_CODECS else "mkv"
    return _CONTAINER_NAMES.get(name, name.split(",")[0])


def _probe_av(source: str | IO[bytes], size: int) -> MediaInfo:
    try:
        with av.open(source, "r", options=_AV_OPTIONS, metadata_errors="replace") as container:
            # Cover art in MP3/M4A files shows up as a one-frame video stream; it does not
            # make the file a video.
            videos = [
                s
                for s in container.streams.video
                if not s.disposition & av.stream.Disposition.attached_pic
            ]
            audios = list(container.streams.audio)
            fmt = _container_format(container)
            kind: MediaKind
            stream: av.stream.Stream
            if videos:
                kind, stream = "video", videos[0]
            elif audios:
                kind, stream = "audio", audios[0]
            else:
                raise MediaError(f"{fmt} file contains no audio or video stream")

            # Containers with a sample index (MP4/MOV, Matroska cues) say where every packet
            # lives; one past the end of the payload means the upload was cut short even
            # though the header parsed. Checking offsets is far cheaper than decoding.
            end = max(
                (e.pos + e.size for s in container.streams for e in s.index_entries),
                default=0,
            )
            if end > size:
                raise MediaError(
                    f"truncated {fmt} file: media data runs to byte {end} but only {size} arrived"
                )

            duration: float | None = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base

            width = height = None
            if kind == "video":
                width, height = videos[0].width, videos[0].height
                if not width or not height:
                    raise MediaError(f"{fmt} video stream does not declare a frame size")
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(_UNSUPPORTED) from exc

    return MediaInfo(
        kind=kind,
        format=fmt,
        bytes=size,
        width=width,
        height=height,
        duration=duration,
        mime=_AV_MIME.get((kind, fmt)),
    )


# --------------------------------------------------------------------------- public API


def _probe(data: _Buffer, image_source: IO[bytes], av_source: str | IO[bytes]) -> MediaInfo:
    try:
        info = _probe_image(image_source, data)
        if info is not None:
            return info
        try:
            return _probe_av(av_source, len(data))
        except MediaError as exc:
            claimed = _claimed_image_format(data)
            if str(exc) == _UNSUPPORTED and claimed is not None:
                raise MediaError(
                    f"truncated or corrupt {claimed} image: its header cannot be parsed"
                ) from exc
            raise
    except MediaError:
        raise
    except Exception as exc:
        # Last line of defence: callers rely on MediaError being the only failure mode.
        raise MediaError(f"could not probe media: {exc}") from exc


def probe(data: bytes) -> MediaInfo:
    """Identify an in-memory payload (an upload body or a decoded ``data:`` URI).

    Raises :class:`MediaError`, and nothing else, when the bytes are not decodable media.
    """
    if not data:
        raise MediaError("empty media payload")
    return _probe(data, io.BytesIO(data), io.BytesIO(data))


def probe_file(path: str | os.PathLike[str]) -> MediaInfo:
    """Identify a file on disk without reading it all into memory.

    The file is memory-mapped for the structural checks and handed to FFmpeg by path, so
    probing a large video costs little more than reading its headers. ``OSError`` (missing
    file, permission denied) propagates unchanged: "your path is wrong" is a different
    problem from "your file is bad".
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise MediaError("empty media payload")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            # The explicit file: protocol stops FFmpeg from reading a name such as
            # "concat:a|b" or "http:..." as a URL.
            return _probe(mapped, fh, "file:" + os.path.abspath(path))


_DATA_URI_HEAD = re.compile(r"\s*data:", re.IGNORECASE)


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """Split an RFC 2397 ``data:`` URI into its media type and decoded payload.

    Returns the bare ``type/subtype`` in lowercase (parameters such as ``charset`` are
    dropped; the default is ``text/plain`` as the RFC says). Both ``;base64`` and
    percent-encoded payloads are accepted. Base64 is checked strictly apart from tolerating
    whitespace and missing ``=`` padding, which real clients commonly produce.
    """
    head = _DATA_URI_HEAD.match(uri)
    if head is None:
        raise MediaError("not a data URI: it must start with 'data:'")
    comma = uri.find(",", head.end())
    if comma < 0:
        raise MediaError("malformed data URI: missing ',' between the media type and the payload")

    params = [p.strip() for p in uri[head.end() : comma].split(";")]
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    if is_base64:
        params.pop()
    mime = params[0].lower() if params[0] and "=" not in params[0] else "text/plain"
    if mime.count("/") != 1 or not all(mime.split("/")):
        raise MediaError(f"malformed data URI: media type {params[0]!r} is not type/subtype")

    raw = uri[comma + 1 :].strip()
    try:
        encoded = urllib.parse.unquote_to_bytes(raw)
    except Exception as exc:
        raise MediaError("malformed data URI: the payload is not valid percent-encoding") from exc
    if is_base64:
        compact = b"".join(encoded.split())
        if len(compact) % 4 == 1:
            raise MediaError(
                "malformed data URI: base64 payload has an impossible length "
                f"({len(compact)} characters)"
            )
        compact += b"=" * (-len(compact) % 4)
        try:
            payload = base64.b64decode(compact, validate=True)
        except binascii.Error as exc:
            raise MediaError(f"malformed data URI: payload is not valid base64 ({exc})") from exc
    else:
        payload = encoded
    if not payload:
        raise MediaError("malformed data URI: the payload is empty")
    return mime, payload
