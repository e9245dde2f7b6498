"""Hostile HTTP itself: huge and broken headers, framing tricks, path tricks, odd methods.

Each strategy wraps an ordinary request (a poll, a create, a health check)
in something a careful server must survive: a 16 MiB header, two
Content-Lengths, a chunk size of ``zz``, a path of ``%2e%2e``. A request whose
framing is broken is owed one answer before the server closes; a request we
leave incomplete (and half-close) is owed none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from hypothesis import strategies as st

from bench.fuzz.bodies import base_body
from bench.fuzz.cases import Context, Header, RawCase, Sent, http, weighted

__all__ = ["FAMILIES"]

Plain = tuple[str, str, list[Header], bytes]  # method, target, headers, body


def plain_requests(ctx: Context) -> st.SearchStrategy[Plain]:
    """Ordinary requests to wrap: a poll of an unknown task, a valid create, a health check."""

    @st.composite
    def build(draw: st.DrawFn) -> Plain:
        provider = draw(st.sampled_from(ctx.providers))
        spec = ctx.specs[provider]
        kind = draw(st.sampled_from(["query", "create", "health"]))
        if kind == "query":
            return "GET", ctx.path(provider, "query", "fuzz-unknown"), [ctx.auth(spec)], b""
        if kind == "create":
            model = draw(st.sampled_from(list(spec.models)))
            body = json.dumps(base_body(spec, model, ctx.image_url)).encode()
            headers: list[Header] = list(ctx.create_headers(spec))
            return "POST", ctx.path(provider, "create"), headers, body
        return "GET", "/_paddock/health", [], b""

    return build()


def _provider_of(ctx: Context, target: str) -> str | None:
    first = target.split("/", 2)[1] if target.startswith("/") else ""
    return first if first in ctx.providers else None


# -- headers ------------------------------------------------------------------------------------


_BROKEN_LINES: list[bytes] = [
    b"X-Fuzz : spaced",
    b"X-Fuzz\tname: tab",
    b"NoColonHere",
    b": empty-name",
    b"X-Fuzz: a\x00b",
    b"X-F\xffzz: binary-name",
    b" folded-continuation",
    b"X-Fuzz: " + b"\xc3\x28" * 10,
    b"(X-Fuzz): parens",
]


def _big_headers(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        method, target, headers, body = draw(plain_requests(ctx))
        how = draw(
            st.sampled_from(
                [
                    "huge value",
                    "many",
                    "huge name",
                    "broken line",
                    "two hosts",
                    "no host",
                    "two lengths",
                    "cookie",
                ]
            )
        )
        extra: list[Header] = []
        host: str | None = ctx.host
        timeout = 5.0
        if how == "huge value":
            size = draw(
                weighted((19, st.integers(8 * 1024, 1024 * 1024)), (1, st.just(16 * 1024 * 1024)))
            )
            extra.append(("X-Fuzz", "v" * size))
            timeout += size / 1_000_000
        elif how == "many":
            count = draw(st.integers(100, 20_000))
            extra += [(f"X-Fuzz-{i}", "v") for i in range(count)]
        elif how == "huge name":
            extra.append(("X-" + "n" * draw(st.integers(1024, 256 * 1024)), "v"))
        elif how == "cookie":
            extra += [("Cookie", "a=" + "b" * 4000)] * draw(st.integers(2, 500))
        elif how == "two hosts":
            extra.append(("Host", "evil.example"))
        elif how == "no host":
            host = None
        elif how == "two lengths":
            second = str(len(body) + draw(st.sampled_from([0, 1, -1, 1000])))
            extra += [("Content-Length", str(len(body))), ("Content-Length", second)]
        data = http(method, target, [*headers, *extra], body, host=host)
        if how == "broken line":
            line = draw(st.sampled_from(_BROKEN_LINES))
            head, _, rest = data.partition(b"\r\n")
            data = head + b"\r\n" + line + b"\r\n" + rest
        return RawCase(
            "big headers",
            _provider_of(ctx, target),
            data,
            (Sent(method, target),),
            required=1,
            note=how,
            timeout=timeout,
        )

    return case()


# -- framing ------------------------------------------------------------------------------------


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, cursor = b"", 0
    for size in sizes:
        piece = body[cursor : cursor + size]
        if not piece:
            break
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        cursor += len(piece)
    if cursor < len(body):
        out += f"{len(body) - cursor:x}\r\n".encode() + body[cursor:] + b"\r\n"
    return out + b"0\r\n\r\n"


_BAD_CHUNKS = [
    b"zz\r\n",
    b"-1\r\n",
    b"0x10\r\n",
    b"5;" + b"e" * 70_000 + b"\r\n",
    b"\r\n",
    b"1" + b"0" * 400 + b"\r\n",
    b"5 5\r\n",
]
_ODD_TE = [
    b"chunked, identity",
    b"identity",
    b"xchunked",
    b"chunked ",
    b"Chunked",
    b"gzip, chunked",
    b"chunked\x00",
    b" chunked",
]
_ODD_LENGTHS = ["99999999999999999999", "1" + "0" * 400, "-1", "1e3", "0x10", "5 5", "+5"]
_ODD_VERSIONS = [
    b"HTTP/1.2",
    b"HTTP/2.0",
    b"HTTP/9.9",
    b"http/1.1",
    b"HTTP/1.1 ",
    b"HTTP/01.1",
    b"HTTX/1.1",
    b"",
]
_NOT_HTTP = [
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    b"GET /\r\n",
    b"\x00" * 64,
    b"\r\n" * 5000,
]


@dataclass(frozen=True)
class Framed:
    """A trick's bytes and what they owe (see ``RawCase``); ``sent`` None: the request alone."""

    data: bytes
    required: int | None = 1
    half_close: bool = False
    sent: tuple[Sent, ...] | None = None


Trick = Callable[[st.DrawFn, Context, Plain], Framed]


def _with(
    ctx: Context, plain: Plain, extra: Sequence[Header], body: bytes | None = None, **options: Any
) -> bytes:
    method, target, headers, own = plain
    return http(
        method, target, [*headers, *extra], own if body is None else body, host=ctx.host, **options
    )


def _length_short(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    # The body's tail and a health check arrive as a second "request".
    cut = draw(st.integers(0, max(len(plain[3]) - 1, 0)))
    health = http("GET", "/_paddock/health", host=ctx.host)
    data = _with(ctx, plain, [("Content-Length", str(cut))]) + health
    return Framed(data, sent=(Sent(plain[0], plain[1]), Sent("GET", "(the body's tail)")))


def _length_long(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    extra = draw(st.integers(1, 1_000_000))
    data = _with(ctx, plain, [("Content-Length", str(len(plain[3]) + extra))])
    return Framed(data, required=0, half_close=True)


def _odd_length(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    value = draw(st.sampled_from(_ODD_LENGTHS))
    return Framed(_with(ctx, plain, [("Content-Length", value)]), half_close=True)


def _chunks(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    sizes = draw(st.lists(st.integers(1, 64), min_size=1, max_size=8))
    te = [("Transfer-Encoding", "chunked")]
    return Framed(_with(ctx, plain, te, _chunked(plain[3], sizes)), required=None)


def _bad_chunk(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    body = draw(st.sampled_from(_BAD_CHUNKS)) + plain[3] + b"\r\n0\r\n\r\n"
    return Framed(_with(ctx, plain, [("Transfer-Encoding", "chunked")], body))


def _unfinished_chunks(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    body = _chunked(plain[3], [3])[:-5]
    te = [("Transfer-Encoding", "chunked")]
    return Framed(_with(ctx, plain, te, body), required=0, half_close=True)


def _length_and_chunked(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    both = [("Content-Length", str(len(plain[3]))), ("Transfer-Encoding", "chunked")]
    return Framed(_with(ctx, plain, both, _chunked(plain[3], [5])))


def _odd_transfer_encoding(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    te = [("Transfer-Encoding", draw(st.sampled_from(_ODD_TE)))]
    return Framed(_with(ctx, plain, te, _chunked(plain[3], [7])))


def _http10(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    method, target, headers, body = plain
    return Framed(http(method, target, headers, body, version=b"HTTP/1.0"))


def _odd_version(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    return Framed(_with(ctx, plain, [], version=draw(st.sampled_from(_ODD_VERSIONS))))


def _bare_lf(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    return Framed(_with(ctx, plain, [], eol=b"\n"))


def _bare_cr(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    # No line ever ends for a strict parser: nothing is owed.
    return Framed(_with(ctx, plain, [], eol=b"\r"), required=0, half_close=True)


def _pipelined(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    count = draw(st.integers(2, 4))
    health = http("GET", "/_paddock/health", host=ctx.host)
    sent = (Sent(plain[0], plain[1]), *[Sent("GET", "/_paddock/health")] * (count - 1))
    return Framed(_with(ctx, plain, []) + health * (count - 1), required=None, sent=sent)


def _absolute_form(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    method, target, headers, body = plain
    return Framed(http(method, f"http://{ctx.host}{target}", headers, body, host=ctx.host))


def _asterisk_form(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    data = http("OPTIONS", "*", [], b"", host=ctx.host)
    return Framed(data, sent=(Sent("OPTIONS", "*"),))


def _expect_without_body(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    headers = [("Expect", "100-continue"), ("Content-Length", str(len(plain[3])))]
    return Framed(_with(ctx, plain, headers, b""), required=0, half_close=True)


def _expect_with_body(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    return Framed(_with(ctx, plain, [("Expect", "100-continue")]), required=None)


def _leading_crlfs(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    return Framed(b"\r\n" * draw(st.integers(1, 3)) + _with(ctx, plain, []))


def _long_request_line(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    method, target, headers, body = plain
    long_target = target + "?q=" + "a" * draw(st.integers(8 * 1024, 1024 * 1024))
    return Framed(http(method, long_target, headers, body, host=ctx.host))


def _odd_spacing(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    spacing = draw(st.sampled_from([b"  ", b"\t", b" \t"]))
    return Framed(_with(ctx, plain, []).replace(b" ", spacing, 1))


def _not_http(draw: st.DrawFn, ctx: Context, plain: Plain) -> Framed:
    data = draw(st.sampled_from(_NOT_HTTP))
    return Framed(data, required=0, half_close=True, sent=(Sent("GET", "(not HTTP)"),))


TRICKS: dict[str, Trick] = {
    "length short": _length_short,
    "length long": _length_long,
    "odd length": _odd_length,
    "chunked": _chunks,
    "bad chunk": _bad_chunk,
    "unfinished chunks": _unfinished_chunks,
    "length and chunked": _length_and_chunked,
    "odd transfer-encoding": _odd_transfer_encoding,
    "http/1.0": _http10,
    "odd version": _odd_version,
    "bare LF": _bare_lf,
    "bare CR": _bare_cr,
    "pipelined": _pipelined,
    "absolute form": _absolute_form,
    "asterisk form": _asterisk_form,
    "expect without body": _expect_without_body,
    "expect with body": _expect_with_body,
    "leading CRLFs": _leading_crlfs,
    "long request line": _long_request_line,
    "odd spacing": _odd_spacing,
    "not HTTP": _not_http,
}


def _framing(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        method, target, headers, body = draw(plain_requests(ctx))
        plain = (method, target, headers, body or b"{}")
        how = draw(st.sampled_from(list(TRICKS)))
        framed = TRICKS[how](draw, ctx, plain)
        return RawCase(
            "framing",
            _provider_of(ctx, target),
            framed.data,
            framed.sent or (Sent(method, target),),
            required=framed.required,
            half_close=framed.half_close,
            note=how,
        )

    return case()


# -- paths and methods --------------------------------------------------------------------------

_SEGMENTS = [
    "..",
    "%2e%2e",
    ".%2e",
    "%2E%2E",
    ".",
    "",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%ff",
    "%",
    "%zz",
    ";x=1",
    "é",
    "%C3%A9",
    "%u002e",
    "~",
    "*",
    "%252e%252e",
    "a" * 300,
]
_RAW_SEGMENTS = [b"\xff", b"\x00", b"\x7f", b"a b", b"\xc3\x28", b"\t"]
_METHODS = [
    "GET",
    "POST",
    "HEAD",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "get",
    "post",
    "Get",
    "FOO",
    "M-SEARCH",
    "X" * 5000,
    "G\x00ET",
    "GET\x7f",
]


def _paths(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        provider = draw(st.sampled_from(ctx.providers))
        known = [ctx.path(provider, kind, "x") for kind in ctx.specs[provider].operations]
        base = draw(
            st.sampled_from(
                [
                    *known,
                    f"/{provider}",
                    "/_paddock/health",
                    "/_paddock/tasks",
                    "/_paddock/media/x",
                    "/_storage/oss",
                    "/_storage/results/x/y.mp4",
                    "/",
                    "",
                ]
            )
        )
        parts = base.split("/")
        for _ in range(draw(st.integers(1, 4))):
            where = draw(st.integers(0, len(parts)))
            parts.insert(where, draw(st.sampled_from(_SEGMENTS)))
        target = "/".join(parts)
        if draw(st.integers(0, 9)) == 0:
            target = "/a" * draw(st.integers(1000, 30_000)) + target
        if not target.startswith("/"):
            target = draw(st.sampled_from(["/", "", "//", "./"])) + target
        raw_target = target.encode("utf-8")
        if draw(st.integers(0, 4)) == 0:
            raw_target += draw(st.sampled_from(_RAW_SEGMENTS))
        method = draw(st.sampled_from(_METHODS))
        if method.upper() == "POST" and "reset" in unquote(target).lower():
            method = "GET"  # a reset would forget the tasks this run promised to keep
        spec = ctx.specs[provider]
        body = b"{}" if method.upper() in ("POST", "PUT", "PATCH") else b""
        data = http(method, raw_target, [ctx.auth(spec)], body, host=ctx.host)
        return RawCase(
            "paths and methods",
            _provider_of(ctx, target),
            data,
            (Sent(method, raw_target.decode("latin-1")),),
            required=1,
            note=f"{method[:20]} {target[:80]!r}",
        )

    return case()


# -- every provider operation with odd ids and parameters ---------------------------------------

_ODD_PARAMS = [
    "1e400",
    "9" * 400,
    "-1",
    "0",
    "%00",
    "١٢٣",
    " 1",
    "",
    "1.5",
    "NaN",
    "99999999999999999999999",
    "20261301000000",
    "%ff",
    "a" * 10_000,
]


def _operations(ctx: Context) -> st.SearchStrategy[RawCase]:
    @st.composite
    def case(draw: st.DrawFn) -> RawCase:
        provider = draw(st.sampled_from(ctx.providers))
        spec = ctx.specs[provider]
        kind = draw(st.sampled_from([k for k in spec.operations if k != "create"] or ["query"]))
        op = spec.operations[kind]
        task_id = draw(
            st.one_of(
                st.sampled_from(list(ctx.task_ids.get(provider, ())) or ["x"]),
                st.text(max_size=40).map(lambda t: quote(t, safe="")),
                st.integers(1000, 100_000).map(lambda n: "t" * n),
                st.sampled_from(["..", "%2e%2e", "%2f", "%00", "%ff", "*", "'", "a/b"]),
            )
        )
        path = ctx.path(provider, kind, task_id)
        names = draw(
            st.lists(
                st.sampled_from(
                    [
                        "page_no",
                        "page_size",
                        "start_time",
                        "end_time",
                        "status",
                        "model_name",
                        "action",
                        "model",
                    ]
                ),
                max_size=6,
            )
        )
        query = "&".join(f"{n}={draw(st.sampled_from(_ODD_PARAMS))}" for n in names)
        target = path + ("?" + query if query else "")
        auth = draw(st.sampled_from(["fuzz", "none", "junk"]))
        headers: list[Header] = [ctx.auth(spec)] if auth == "fuzz" else []
        if auth == "junk":
            headers.append((spec.auth_header, draw(st.sampled_from(["Bearer", "Basic eA==", "x"]))))
        body = b"{}" if op.method in ("POST", "PUT", "PATCH") else b""
        data = http(op.method, target, headers, body, host=ctx.host)
        return RawCase(
            "provider operations",
            provider,
            data,
            (Sent(op.method, target),),
            note=f"{kind} {auth} key",
        )

    return case()


FAMILIES: dict[str, Callable[[Context], st.SearchStrategy[RawCase]]] = {
    "big headers": _big_headers,
    "framing": _framing,
    "paths and methods": _paths,
    "provider operations": _operations,
}
