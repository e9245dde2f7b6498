"""Fetch remote media for the mock without letting a request reach inside the network.

With ``--fetch-media`` the mock downloads an ``http(s)`` media URL so the file
is probed and judged like an upload. A mock that fetches any URL a client
names is a server-side request forgery waiting to happen: a request could make
it read a cloud metadata endpoint or an admin page on the same host. So:

* the host is resolved once (every address ``getaddrinfo`` returns) and refused
  if *any* address is loopback, private, link-local, carrier-grade NAT,
  multicast, unspecified, reserved or a cloud metadata address, also when the
  address hides inside an IPv6 form (IPv4-mapped, 6to4, NAT64);
* the connection then goes to an address that was vetted, never to the name
  again, so a DNS answer that changes between check and connect (rebinding)
  cannot swap it; the name still goes in the Host header and TLS SNI, and the
  certificate is verified against it;
* every redirect is a new hop, checked and vetted the same way, at most
  ``max_redirects`` of them;
* a host named in the allow-list (``--fetch-allow``) is let through to private
  addresses, for tests and for teams whose media lives on a private network;
* the body is capped in bytes while it streams (a declared Content-Length over
  the cap is refused before any of the body is read), the whole fetch in
  seconds, the number of fetches at once by a semaphore, and repeated fetches
  of one URL by a small cache bounded in bytes and age;
* no proxy is ever used, whatever the environment says, and URLs carrying a
  user name or password are refused so no credential is sent anywhere.

The vetting sits in an ``httpcore`` network backend, which httpcore documents
as public API for custom DNS and connection behaviour (encode/httpcore#699;
"Network Backends" in its docs), used through ``httpcore.AsyncConnectionPool``
and its public ``network_backend`` argument. httpx 0.28 offers no public way to
hand its transport a backend (encode/httpx#3749 is still open), so the fetcher
speaks httpcore directly and uses ``httpx.URL`` only to parse and join URLs.

Any port is allowed: what the check guards is which machine is reached, and an
allow-listed local server listens wherever it likes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, TypeAlias, TypeVar

import httpcore
import httpx

from contracts.media import MediaError, MediaInfo, probe
from contracts.validate import MediaResolver, MediaUnavailable

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_CACHE_TTL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_TIMEOUT",
    "FetchError",
    "FetchedMediaResolver",
    "MediaFetcher",
    "RemoteURLCollector",
    "address_refusal",
    "validate_fetching",
]

# Images are limited to 10 MB and audio to 15 MiB by the specs, so 16 MiB lets
# every such file through to be judged by its model's own rule; larger video
# needs --fetch-max-bytes. Concurrency times this is the most a worker holds.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0  # seconds for the whole fetch, redirects included
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_CONCURRENCY = 8
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
DEFAULT_CACHE_TTL = 60.0  # seconds; a changed file at the same URL is seen within a minute

FetchReason = Literal[
    "url", "address", "unreachable", "protocol", "status", "redirects", "too_large", "timeout"
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = b"paddock-media-fetcher"

_IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CLASSES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), words)
    for nets, words in (
        (("0.0.0.0/8", "::/128"), "an unspecified address"),
        (("127.0.0.0/8", "::1/128"), "a loopback address"),
        (("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "a private address (RFC 1918)"),
        (("fc00::/7",), "a private address (unique local, fc00::/7)"),
        (("169.254.0.0/16", "fe80::/10"), "a link-local address"),
        (("100.64.0.0/10",), "a carrier-grade NAT address (100.64.0.0/10)"),
        (("224.0.0.0/4", "ff00::/8"), "a multicast address"),
        (("fec0::/10",), "a site-local address"),
        # Named here because Python versions disagree on which of them is_global covers.
        (
            (
                "192.0.0.0/24",
                "192.0.2.0/24",
                "198.18.0.0/15",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "100::/64",
                "2001:db8::/32",
                "3fff::/20",
            ),
            "a special-purpose address, not on the public internet",
        ),
    )
    for net in nets
)


class FetchError(MediaUnavailable):
    """A media URL that could not be fetched, with words a person can act on.

    ``kind`` is always ``media_url`` (the spec's answer to a URL the service
    cannot use); ``reason`` says which guard or failure it was, for callers
    and tests that must tell them apart without reading the message.
    """

    def __init__(self, reason: FetchReason, detail: str) -> None:
        super().__init__("media_url", detail)
        self.reason: FetchReason = reason


def address_refusal(address: _IP) -> str | None:
    """Why the fetcher will not connect to ``address`` (e.g. "a loopback address"), or None."""
    if address in _METADATA:
        return "a cloud metadata address"
    inner = _embedded_ipv4(address)
    if inner is not None:
        why = address_refusal(inner)
        return None if why is None else f"{why} in IPv6 form"
    for network, words in _CLASSES:
        if address.version == network.version and address in network:
            return words
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: _IP) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _host_key(host: str) -> str:
    """One spelling per host, so the allow-list matches however a URL writes it."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _VettingBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, refuses forbidden addresses, and connects to the vetted address."""

    def __init__(self, allow: frozenset[str]) -> None:
        self._allow = allow
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        if _host_key(host) not in self._allow:
            for address in addresses:
                why = address_refusal(address)
                if why is not None:
                    said = (
                        f"{host} is"
                        if str(address) == _host_key(host)
                        else f"{host} resolves to {address},"
                    )
                    raise FetchError(
                        "address",
                        f"{said} {why}; only public addresses are fetched"
                        " unless the host is allow-listed",
                    )
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                # An address literal: anyio connects to it without asking DNS again.
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # _resolve never answers an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchError("address", "media is never fetched over a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    @staticmethod
    async def _resolve(host: str, port: int) -> list[_IP]:
        loop = asyncio.get_running_loop()
        try:
            # The loop runs getaddrinfo in its executor, so a slow resolver never blocks it.
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise FetchError("unreachable", f"the host {host} could not be resolved") from None
        addresses: dict[_IP, None] = {}
        for *_, sockaddr in infos:
            try:
                addresses[ipaddress.ip_address(sockaddr[0])] = None
            except ValueError:
                continue
        if not addresses:
            raise FetchError("unreachable", f"the host {host} has no IP address")
        return list(addresses)


class _ByteCache:
    """Recently fetched bodies by URL, bounded in total bytes and in age (LRU)."""

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._size = 0
        self.max_bytes = max_bytes
        self.ttl = ttl

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self.ttl:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = (time.monotonic(), data)
        self._size += len(data)
        while self._size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._size -= len(evicted)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= len(entry[1])


def _checked_url(url: str | httpx.URL) -> httpx.URL:
    """Refuse, before any traffic, a URL the fetcher will not try."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError("url", f"{_clip(str(url))!r} is not a valid URL: {exc}") from None
    shown = _clip(str(parsed.copy_with(username=None, password=None)))
    if parsed.scheme not in ("http", "https"):
        raise FetchError("url", f"{shown!r} is not an http(s) URL; only http and https are fetched")
    if parsed.userinfo:
        raise FetchError(
            "url",
            f"the URL for {parsed.host} carries a user name or password;"
            " media URLs with credentials are not fetched",
        )
    if not parsed.host:
        raise FetchError("url", f"{shown!r} has no host")
    return parsed


class MediaFetcher:
    """Fetches ``http(s)`` media with the SSRF guards, size and time caps above.

    Use one per process (it holds a semaphore and a cache) from one event loop.
    """

    def __init__(
        self,
        allow: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` replaces the default trust store (certifi, or SSL_CERT_FILE)."""
        for name, value, least in (
            ("max_bytes", max_bytes, 1),
            ("max_redirects", max_redirects, 0),
            ("concurrency", concurrency, 1),
            ("cache_bytes", cache_bytes, 0),
            ("cache_ttl", cache_ttl, 0),
        ):
            if not value >= least:
                raise ValueError(f"MediaFetcher {name} must be at least {least}, got {value!r}")
        if not timeout > 0:
            raise ValueError(f"MediaFetcher timeout must be over 0 seconds, got {timeout!r}")
        self.allow = frozenset(_host_key(host) for host in allow)
        if "" in self.allow:
            raise ValueError("an allow-listed host must not be empty")
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._slots = asyncio.Semaphore(concurrency)
        self._cache = _ByteCache(cache_bytes, cache_ttl)
        self._backend = _VettingBackend(self.allow)
        self._ssl = ssl_context or httpx.create_ssl_context()

    async def fetch(self, url: str) -> bytes:
        """The body at ``url``; raises FetchError saying what was wrong."""
        target = _checked_url(url)
        key = str(target)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        started = False
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    # Another request may have fetched it while this one waited for a slot.
                    cached = self._cache.get(key)
                    if cached is not None:
                        return cached
                    started = True
                    data = await self._follow(target)
        except TimeoutError:
            if not started:
                raise FetchError(
                    "timeout",
                    f"{_shown(target)} was not fetched: the mock was busy fetching other"
                    f" media for {self.timeout:g} s",
                ) from None
            raise FetchError(
                "timeout", f"{_shown(target)} timed out after {self.timeout:g} s"
            ) from None
        self._cache.put(key, data)
        return data

    async def fetch_all(self, urls: Iterable[str]) -> dict[str, bytes | FetchError]:
        """Fetch each distinct URL at once (within the concurrency bound); failures as values."""
        unique = list(dict.fromkeys(urls))

        async def one(url: str) -> bytes | FetchError:
            try:
                return await self.fetch(url)
            except FetchError as exc:
                return exc

        return dict(zip(unique, await asyncio.gather(*map(one, unique)), strict=True))

    async def _follow(self, url: httpx.URL) -> bytes:
        first = url
        async with httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=1,
            retries=0,
            network_backend=self._backend,
        ) as pool:
            for _ in range(self.max_redirects + 1):
                try:
                    found = await self._get(pool, url)
                except FetchError as exc:
                    why = (
                        exc.detail
                        if url is first
                        else f"it redirected to {_shown(url)}, and {exc.detail}"
                    )
                    raise FetchError(
                        exc.reason, f"{_shown(first)} was not fetched: {why}"
                    ) from None
                if isinstance(found, bytes):
                    return found
                url = found
        raise FetchError(
            "redirects",
            f"{_shown(first)} was not fetched: more than {self.max_redirects} redirects"
            f" (the last to {_shown(url)})",
        )

    async def _get(self, pool: httpcore.AsyncConnectionPool, url: httpx.URL) -> bytes | httpx.URL:
        """One hop: the body, or the URL a redirect points to (already checked)."""
        host = url.host
        request_url = httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        )
        headers = [
            (b"Host", url.netloc),
            (b"User-Agent", _USER_AGENT),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"identity"),
        ]
        try:
            async with pool.stream("GET", request_url, headers=headers) as response:
                status = response.status
                if status in _REDIRECTS:
                    location = _header(response.headers, b"location")
                    if location is None:
                        raise FetchError("status", f"HTTP {status} from {host} had no Location")
                    try:
                        return _checked_url(url.join(location))
                    except httpx.InvalidURL:
                        raise FetchError(
                            "url", f"{host} redirected to an invalid URL {_clip(location)!r}"
                        ) from None
                    except FetchError as exc:
                        raise FetchError(exc.reason, f"it redirected, and {exc.detail}") from None
                if not 200 <= status < 300:
                    raise FetchError("status", f"HTTP {status} from {host}")
                return await self._body(response, host)
        except httpcore.ConnectError as exc:
            raise FetchError("unreachable", _connect_failure(exc, host, url)) from None
        except httpcore.TimeoutException:
            raise FetchError("timeout", f"{host} did not answer in time") from None
        except (httpcore.ProtocolError, httpcore.NetworkError):
            raise FetchError(
                "protocol", f"{host} broke off or did not answer with valid HTTP"
            ) from None

    async def _body(self, response: httpcore.Response, host: str) -> bytes:
        encoding = _header(response.headers, b"content-encoding")
        if encoding and encoding.lower() != "identity":
            raise FetchError(
                "protocol", f"{host} sent the file {encoding}-encoded, which is not decoded"
            )
        declared = _header(response.headers, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            raise FetchError(
                "too_large", f"{host} declares {int(declared)} bytes, over {self.max_bytes} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError(
                    "too_large", f"the file from {host} is over {self.max_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _shown(url: httpx.URL) -> str:
    return _clip(str(url))


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _connect_failure(exc: httpcore.ConnectError, host: str, url: httpx.URL) -> str:
    cause: BaseException | None = exc
    for _ in range(4):  # httpcore wraps the ssl error (its pool re-raises "from None")
        cause = (cause.__cause__ or cause.__context__) if cause is not None else None
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {host} could not be verified ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake with {host} failed"
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"could not connect to {host} on port {port}"


class RemoteURLCollector:
    """A resolver that notes the URLs ``base`` accepts unread (origin ``remote``).

    It remembers ``base``'s answers, so a second validation pass does not probe
    the same data: URI or upload twice.
    """

    def __init__(self, base: MediaResolver, remote_origin: str = "remote") -> None:
        self._base = base
        self._remote_origin = remote_origin
        self.answers: dict[str, tuple[str, MediaInfo | None]] = {}
        self.urls: list[str] = []

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        answer = self.answers.get(url)
        if answer is None:
            answer = self.answers[url] = self._base.resolve(url)
            if answer[0] == self._remote_origin and answer[1] is None:
                self.urls.append(url)
        return answer


class FetchedMediaResolver:
    """Answers fetched URLs from their probed bytes (origin ``fetched``), others from ``base``."""

    def __init__(
        self, base: MediaResolver, fetched: Mapping[str, bytes | MediaUnavailable]
    ) -> None:
        self._base = base
        self._fetched = fetched

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        got = self._fetched.get(url)
        if got is None:
            return self._base.resolve(url)
        if isinstance(got, MediaUnavailable):
            raise MediaUnavailable(got.kind, got.detail)
        try:
            return "fetched", probe(got)
        except MediaError as exc:
            raise MediaUnavailable("media_unreadable", f"{_clip(url)}: {exc}") from None


T = TypeVar("T")


async def validate_fetching(
    validate: Callable[[MediaResolver], T], base: MediaResolver, fetcher: MediaFetcher | None
) -> T:
    """Run a synchronous validation with remote media fetched first, when a fetcher is given.

    The first pass learns which URLs ``base`` would accept unread; they are
    fetched together, and a second pass judges their bytes like uploads. The
    answer is the first broken rule in the service's own order either way.
    """
    if fetcher is None:
        return validate(base)
    collector = RemoteURLCollector(base)
    result = validate(collector)
    if not collector.urls:
        return result
    fetched = await fetcher.fetch_all(collector.urls)
    return validate(FetchedMediaResolver(collector, fetched))
