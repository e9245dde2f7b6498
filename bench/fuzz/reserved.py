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
from urllib.parse import quote

from hypothesis import strategies as st

from bench.fuzz.bodies import deep_values
from bench.fuzz.cases import Context, Header, RawCase, Sent, http

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
    small = png(400, 300, zlib.compress(b"\x00" + b"\x80" * 1200 * 300))
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


def _admin(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        what = draw(
            st.sampled_from(
                [
                    "advance",
                    "advance",
                    "advance",
                    "requests",
                    "tasks",
                    "media",
                    "media",
                    "get media",
                    "wrong method",
                    "health",
                ]
            )
        )
        method, target, headers, body = "GET", "/_paddock/health", [], b""
        refuse, note = False, what
        if what == "advance":
            method, target = "POST", "/_paddock/clock/advance"
            shape = draw(
                st.sampled_from(
                    ["refused", "refused", "deep", "digits", "harmless", "not JSON", "root"]
                )
            )
            if shape == "refused":
                value = draw(st.sampled_from(_REFUSED_SECONDS))
            elif shape == "deep":
                value = draw(deep_values()).text
            elif shape == "digits":
                value = b"9" * draw(st.integers(13, 6000))
            elif shape == "harmless":
                value = draw(st.sampled_from(_HARMLESS_SECONDS))
            else:
                value = b""
            refuse = shape != "harmless"
            if shape == "not JSON":
                body = draw(
                    st.sampled_from(
                        [
                            b"",
                            b"\xff\xfe",
                            b'{"seconds": "\xff"}',
                            b"\xef\xbb\xbf{}",
                            b"{" * 100_000,
                            '{"seconds": -1}'.encode("utf-16"),
                        ]
                    )
                )
            elif shape == "root":
                body = draw(deep_values()).text
            else:
                body = b'{"seconds": ' + value + b"}"
            headers = [
                (
                    "Content-Type",
                    draw(st.sampled_from(["application/json", "text/plain", "x/\xff"])),
                )
            ]
            note = f"advance {body[:60]!r}"
        elif what == "requests":
            limit = draw(
                st.sampled_from(
                    [
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
                )
            )
            provider = draw(st.sampled_from([*ctx.providers, "%ff", "x" * 5000]))
            target = f"/_paddock/requests?limit={limit}&provider={provider}"
        elif what == "tasks":
            provider = draw(st.sampled_from([*ctx.providers, "", "%00", "x" * 5000, "%ff"]))
            target = f"/_paddock/tasks?provider={provider}"
        elif what == "media":
            method, target = "POST", "/_paddock/media"
            body, note = draw(_media_junk())
            length = draw(st.sampled_from([None, None, None, "99999999999", "70000000"]))
            if length is not None:
                headers.append(("Content-Length", length))
            headers.append(("Content-Type", draw(st.sampled_from(["image/png", "", "\xff/\xfe"]))))
        elif what == "get media":
            key = draw(
                st.sampled_from(
                    [
                        "..%2f..%2fetc%2fpasswd",
                        "x" * 10_000,
                        "%00",
                        ".png",
                        "a.png%00.jpg",
                        "%ff",
                        "..",
                        "\u00e9",
                    ]
                )
            )
            method = draw(st.sampled_from(["GET", "HEAD"]))
            target = f"/_paddock/media/{key}"
        elif what == "wrong method":
            method = draw(st.sampled_from(["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]))
            target = draw(
                st.sampled_from(
                    [
                        "/_paddock/health",
                        "/_paddock/reset",
                        "/_paddock/clock/advance",
                        "/_paddock/media",
                        "/_paddock/tasks",
                        "/_paddock",
                    ]
                )
            )
        else:
            target = "/_paddock/health?" + draw(st.sampled_from(["%", "a=%ff", "x" * 100_000]))
        data = http(method, target, headers, body, host=ctx.host)
        return RawCase("admin", None, data, (Sent(method, target),), refuse=refuse, note=note)

    return case()


def _multipart(fields: list[tuple[bytes, bytes]], boundary: bytes, file: bytes | None) -> bytes:
    out = b""
    for name, value in fields:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name
        out += b'"\r\n\r\n' + value + b"\r\n"
    if file is not None:
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        out += b'filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + file + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def _storage(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        what = draw(st.sampled_from(["signed link", "signed link", "bad link", "upload", "upload"]))
        method, headers, body = "GET", list[Header](), b""
        if what == "signed link" and ctx.result_links:
            target = draw(st.sampled_from(list(ctx.result_links)))
            how = draw(
                st.sampled_from(
                    ["range", "range", "auth", "tamper sig", "tamper expiry", "head", "post"]
                )
            )
            if how == "range":
                headers.append(
                    (
                        "Range",
                        draw(
                            st.sampled_from(
                                [
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
                            )
                        ),
                    )
                )
            elif how == "auth":
                headers += [("Authorization", "Bearer x"), ("Range", "bytes=0-9")]
            elif how == "tamper sig":
                target = target[:-2] + ("AA" if not target.endswith("AA") else "BB")
            elif how == "tamper expiry":
                target = target.replace("Expires=", "Expires=1", 1)
            elif how == "head":
                method = "HEAD"
            else:
                method = "POST"
            note = f"signed link, {how}"
        elif what in ("signed link", "bad link"):
            provider = draw(st.sampled_from([*ctx.providers, "x", "..", "%2e%2e"]))
            task = draw(st.sampled_from(["x", "%00", "a" * 5000, "..%2f..", "\u00e9"]))
            expires = draw(
                st.sampled_from(["", "1" + "0" * 400, "-1", "١٢٣", "%00", "99999999999"])
            )
            signature = draw(st.sampled_from(["", "x", "%ff", "=" * 5000, "a+b/c=="]))
            target = (
                f"/_storage/results/{quote(provider)}/{task}.mp4?Expires={expires}"
                f"&OSSAccessKeyId=x&Signature={signature}"
            )
            note = "bad link"
        else:
            method, target = "POST", "/_storage/oss"
            body, headers, note = draw(_upload(ctx))
        data = http(method, target, headers, body, host=ctx.host)
        return RawCase("storage", None, data, (Sent(method, target),), note=note, timeout=10.0)

    return case()


@st.composite
def _upload(draw: st.DrawFn, ctx: Context) -> tuple[bytes, list[Header], str]:
    """A multipart POST to the mock's OSS: a real policy with a bad key, or junk all through."""
    boundary = b"fuzzboundary"
    policy = dict(ctx.policy)
    fields = [(k.encode(), v.encode()) for k, v in policy.items()]
    how = draw(
        st.sampled_from(
            [
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
        )
    )
    file: bytes | None = png(400, 300, zlib.compress(b"\x00" + b"\x80" * 1200 * 300))
    content_type = b"multipart/form-data; boundary=" + boundary
    directory = policy.get("key", "x/")
    if how == "key outside":
        fields.append((b"key", draw(st.sampled_from([b"../x", b"/etc/passwd", b"", b"\xff"]))))
    elif how == "key huge":
        fields.append((b"key", directory.encode() + b"k" * draw(st.integers(1000, 200_000))))
    elif how == "no file":
        fields.append((b"key", directory.encode() + b"a.png"))
        file = None
    elif how == "junk policy":
        fields = [(b"policy", b"%%%"), (b"Signature", b"x"), (b"key", b"a")]
    elif how == "many parts":
        fields += [(b"f%d" % i, b"v") for i in range(draw(st.integers(100, 5000)))]
    elif how == "binary names":
        fields.append((b"\xff\xfe", b"\x00\xff"))
    elif how == "big part":
        fields.append((b"key", directory.encode() + b"a.png"))
        file = b"\x00" * (4 * 1024 * 1024 + 10)
    elif how == "valid":
        fields.append((b"key", directory.encode() + b"fuzz.png"))
    body = _multipart(fields, boundary, file)
    if how == "unterminated":
        body = body[: len(body) // 2]
    if how == "no boundary":
        content_type = b"multipart/form-data"
    return body, [("Content-Type", content_type)], f"upload, {how}"


FAMILIES: dict[str, Callable[[Context], st.SearchStrategy[RawCase]]] = {
    "admin": _admin,
    "storage": _storage,
}
