"""Hostile calls to the routes no provider owns: the admin API and the mock's object storage.

Two calls are left out on purpose: ``POST /_paddock/reset`` (it forgets the
tasks this run promises to keep) and any clock jump a client may legally
make, which would move those tasks on. Every clock value sent is either one
the API must refuse (negative, not a number, not finite, or beyond year
9999, where timestamps stop being printable) or one too small to matter.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from hypothesis import strategies as st

from bench.fuzz.bodies import deep_values
from bench.fuzz.cases import Context, Header, RawCase, Sent, http
from bench.fuzz.tasks import sample_png

__all__ = ["FAMILIES", "png"]

_REFUSED_SECONDS = [
    b"1" + b"0" * 400,
    b"-1",
    b"-0.5",
    b"-1e308",
    b"1e308",
    b"1e400",
    b"-1e400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'"60"',
    b"true",
    b"false",
    b"null",
    b"[]",
    b"{}",
    b"[60]",
    b'{"seconds": 60}',
    b"1e12",
    b"2.6e11",
    b"9007199254740993e3",
    b'"\\ud800"',
]
_HARMLESS_SECONDS = [b"0", b"-0", b"0.0", b"0e0", b"1e-9", b"-0.0"]


def png(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A PNG claiming ``width`` x ``height``; with no pixels it is a header over a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = pixels if pixels is not None else zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _media_junk() -> st.SearchStrategy[tuple[bytes, str]]:
    small = sample_png()
    return st.one_of(
        st.binary(max_size=4096).map(lambda b: (b, "random bytes")),
        st.integers(8, len(small) - 1).map(lambda n: (small[:n], "truncated PNG")),
        st.sampled_from(
            [
                (png(65535, 65535), "PNG claiming 65535x65535"),
                (png(2**31 - 1, 1), "PNG claiming 2**31-1 wide"),
                (png(0, 0), "PNG claiming 0x0"),
            ]
        ),
        st.sampled_from(
            [
                (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 64, "GIF 65535x65535"),
                (
                    b"BM"
                    + struct.pack("<IHHIIii", 1 << 30, 0, 0, 54, 40, 1 << 20, 1 << 20)
                    + b"\x00" * 64,
                    "BMP 2**20 square",
                ),
                (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "JPEG start, then zeros"),
                (b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 200, "MP4 box, then junk"),
                (b"RIFF\xff\xff\xff\xffWAVEfmt " + b"\xff" * 64, "WAV header with huge sizes"),
                (b"\x00" * (3 * 1024 * 1024), "3 MiB of zeros"),
                (b"", "empty"),
            ]
        ),
    )


@dataclass(frozen=True)
class Call:
    """One request to a reserved route; ``refuse``: a 2xx would be a finding."""

    method: str
    target: str
    headers: list[Header] = field(default_factory=list)
    body: bytes = b""
    refuse: bool = False
    note: str = ""


_NOT_JSON = [
    b"",
    b"\xff\xfe",
    b'{"seconds": "\xff"}',
    b"\xef\xbb\xbf{}",
    b"{" * 100_000,
    '{"seconds": -1}'.encode("utf-16"),
]


def _advance(draw: st.DrawFn, ctx: Context) -> Call:
    shape = draw(st.sampled_from(["refused", "refused", "deep", "digits", "harmless", "other"]))
    if shape == "refused":
        body = b'{"seconds": ' + draw(st.sampled_from(_REFUSED_SECONDS)) + b"}"
    elif shape == "deep":
        body = b'{"seconds": ' + draw(deep_values()).text + b"}"
    elif shape == "digits":
        body = b'{"seconds": ' + b"9" * draw(st.integers(13, 6000)) + b"}"
    elif shape == "harmless":
        body = b'{"seconds": ' + draw(st.sampled_from(_HARMLESS_SECONDS)) + b"}"
    else:  # not JSON, or nesting at the root
        body = draw(st.one_of(st.sampled_from(_NOT_JSON), deep_values().map(lambda v: v.text)))
    kind = draw(st.sampled_from(["application/json", "text/plain", "x/\xff"]))
    return Call(
        "POST",
        "/_paddock/clock/advance",
        [("Content-Type", kind)],
        body,
        refuse=shape != "harmless",
        note=f"advance {body[:60]!r}",
    )


_LIMITS = [
    "-1",
    "0",
    "1000",
    "9999999",
    "99999999",
    "1e3",
    "%00",
    "١٢٣",
    "%20",
    "",
    "1" * 500,
    "10&limit=-1",
]


def _journal(draw: st.DrawFn, ctx: Context) -> Call:
    limit = draw(st.sampled_from(_LIMITS))
    provider = draw(st.sampled_from([*ctx.providers, "%ff", "x" * 5000]))
    return Call("GET", f"/_paddock/requests?limit={limit}&provider={provider}", note="requests")


def _task_list(draw: st.DrawFn, ctx: Context) -> Call:
    provider = draw(st.sampled_from([*ctx.providers, "", "%00", "x" * 5000, "%ff"]))
    return Call("GET", f"/_paddock/tasks?provider={provider}", note="tasks")


def _put_media(draw: st.DrawFn, ctx: Context) -> Call:
    body, note = draw(_media_junk())
    headers: list[Header] = []
    length = draw(st.sampled_from([None, None, None, "99999999999", "70000000"]))
    if length is not None:
        headers.append(("Content-Length", length))
    headers.append(("Content-Type", draw(st.sampled_from(["image/png", "", "\xff/\xfe"]))))
    return Call("POST", "/_paddock/media", headers, body, note=f"media: {note}")


_MEDIA_KEYS = [
    "..%2f..%2fetc%2fpasswd",
    "x" * 10_000,
    "%00",
    ".png",
    "a.png%00.jpg",
    "%ff",
    "..",
    "\u00e9",
]


def _get_media(draw: st.DrawFn, ctx: Context) -> Call:
    method = draw(st.sampled_from(["GET", "HEAD"]))
    return Call(method, "/_paddock/media/" + draw(st.sampled_from(_MEDIA_KEYS)), note="get media")


_ADMIN_PATHS = [
    "/_paddock/health",
    "/_paddock/reset",
    "/_paddock/clock/advance",
    "/_paddock/media",
    "/_paddock/tasks",
    "/_paddock",
]


def _wrong_method(draw: st.DrawFn, ctx: Context) -> Call:
    method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]))
    return Call(method, draw(st.sampled_from(_ADMIN_PATHS)), note="wrong method")


def _odd_health(draw: st.DrawFn, ctx: Context) -> Call:
    query = draw(st.sampled_from(["%", "a=%ff", "x" * 100_000]))
    return Call("GET", "/_paddock/health?" + query, note="health")


ADMIN_CALLS: list[Callable[[st.DrawFn, Context], Call]] = [
    _advance,
    _advance,
    _advance,
    _journal,
    _task_list,
    _put_media,
    _put_media,
    _get_media,
    _wrong_method,
    _odd_health,
]


def _admin(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        call = draw(st.sampled_from(ADMIN_CALLS))(draw, ctx)
        data = http(call.method, call.target, call.headers, call.body, host=ctx.host)
        return RawCase(
            "admin",
            None,
            data,
            (Sent(call.method, call.target),),
            refuse=call.refuse,
            note=call.note,
        )

    return case()


_RANGES = [
    "bytes=0-0",
    "bytes=-0",
    "bytes=99999999999999999999-",
    "bytes=5-1",
    "bytes=0-1,2-3",
    "bytes=" + "9" * 400,
    "bytes=-",
    "items=0-1",
    "bytes=-1",
    "bytes=0-" + "1" * 5000,
    "bytes=\xff-1",
]


def _signed_link(draw: st.DrawFn, ctx: Context) -> Call:
    """A real signed result link, asked for oddly: ranges, a key, a tampered signature."""
    if not ctx.result_links:
        return _bad_link(draw, ctx)
    target = draw(st.sampled_from(list(ctx.result_links)))
    how = draw(
        st.sampled_from(["range", "range", "auth", "tamper sig", "tamper expiry", "head", "post"])
    )
    method, headers = "GET", list[Header]()
    if how == "range":
        headers.append(("Range", draw(st.sampled_from(_RANGES))))
    elif how == "auth":
        headers += [("Authorization", "Bearer x"), ("Range", "bytes=0-9")]
    elif how == "tamper sig":
        target = target[:-2] + ("AA" if not target.endswith("AA") else "BB")
    elif how == "tamper expiry":
        target = target.replace("Expires=", "Expires=1", 1)
    else:
        method = "HEAD" if how == "head" else "POST"
    return Call(method, target, headers, note=f"signed link, {how}")


def _bad_link(draw: st.DrawFn, ctx: Context) -> Call:
    provider = draw(st.sampled_from([*ctx.providers, "x", "..", "%2e%2e"]))
    task = draw(st.sampled_from(["x", "%00", "a" * 5000, "..%2f..", "\u00e9"]))
    expires = draw(st.sampled_from(["", "1" + "0" * 400, "-1", "١٢٣", "%00", "99999999999"]))
    signature = draw(st.sampled_from(["", "x", "%ff", "=" * 5000, "a+b/c=="]))
    target = (
        f"/_storage/results/{quote(provider)}/{task}.mp4?Expires={expires}"
        f"&OSSAccessKeyId=x&Signature={signature}"
    )
    return Call("GET", target, note="bad link")


def _multipart(fields: list[tuple[bytes, bytes]], boundary: bytes, file: bytes | None) -> bytes:
    out = b""
    for name, value in fields:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name
        out += b'"\r\n\r\n' + value + b"\r\n"
    if file is not None:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        out += b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + file + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


_UPLOADS = [
    "key outside",
    "key huge",
    "no file",
    "junk policy",
    "many parts",
    "unterminated",
    "no boundary",
    "binary names",
    "big part",
    "valid",
]


def _upload(draw: st.DrawFn, ctx: Context) -> Call:
    """A multipart POST to the mock's OSS: a real policy with a bad key, or junk all through."""
    boundary = b"fuzzboundary"
    policy = dict(ctx.policy)
    directory = policy.pop("key", "x") + "/"
    fields = [(k.encode(), v.encode()) for k, v in policy.items()]
    how = draw(st.sampled_from(_UPLOADS))
    file: bytes | None = sample_png()
    if how == "key outside":
        fields.append((b"key", draw(st.sampled_from([b"../x", b"/etc/passwd", b"", b"\xff"]))))
    elif how == "key huge":
        fields.append((b"key", directory.encode() + b"k" * draw(st.integers(1000, 200_000))))
    elif how == "junk policy":
        fields = [(b"policy", b"%%%"), (b"Signature", b"x"), (b"key", b"a")]
    elif how == "many parts":
        fields += [(b"f%d" % i, b"v") for i in range(draw(st.integers(100, 5000)))]
    elif how == "binary names":
        fields.append((b"\xff\xfe", b"\x00\xff"))
    else:
        fields.append((b"key", directory.encode() + b"fuzz.png"))
        file = {"no file": None, "big part": b"\x00" * (4 * 1024 * 1024 + 10)}.get(how, file)
    body = _multipart(fields, boundary, file)
    if how == "unterminated":
        body = body[: len(body) // 2]
    content_type = b"multipart/form-data" + (
        b"" if how == "no boundary" else b"; boundary=" + boundary
    )
    return Call(
        "POST", "/_storage/oss", [("Content-Type", content_type)], body, note=f"upload, {how}"
    )


STORAGE_CALLS: list[Callable[[st.DrawFn, Context], Call]] = [
    _signed_link,
    _signed_link,
    _bad_link,
    _upload,
    _upload,
]


def _storage(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        call = draw(st.sampled_from(STORAGE_CALLS))(draw, ctx)
        data = http(call.method, call.target, call.headers, call.body, host=ctx.host)
        return RawCase(
            "storage", None, data, (Sent(call.method, call.target),), note=call.note, timeout=10.0
        )

    return case()


FAMILIES: dict[str, Callable[[Context], st.SearchStrategy[RawCase]]] = {
    "admin": _admin,
    "storage": _storage,
}
