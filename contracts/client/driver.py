"""What both drivers share: the one constructor, httpx's settings, and its failures in core terms.

The network is httpx's own (``httpx.Client`` / ``httpx.AsyncClient`` over
httpcore), built here with bounded pool limits and timeouts. With
``trust_env`` (the default) it honours ``HTTPS_PROXY``, ``HTTP_PROXY``,
``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` exactly
as httpx does. Certificates are verified unless ``verify=False``.
"""

from __future__ import annotations

import os
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from contracts.client.actions import Failure
from contracts.client.core import Core
from contracts.errors import CertificateVerifyFailed, PaddockError, UnexpectedResponse
from contracts.spec import Spec, SpecSet

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "Answer",
    "Driver",
    "HttpSettings",
    "Verify",
    "failure",
]

DEFAULT_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=5)
"""At most 16 connections per client, all kept alive between polls for 5 s."""

DEFAULT_TIMEOUT = 60.0
"""Seconds for each of connect, read, write and waiting for a pooled connection."""

MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""An API answer (not a download) longer than this is refused: a real one is a few KB."""

Verify = bool | str | os.PathLike[str] | ssl.SSLContext
"""``True`` (system CAs, or ``SSL_CERT_FILE``), a CA bundle file or directory, a context, or
``False`` (no verification: for a throwaway local server only)."""

TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
SleepT = TypeVar("SleepT")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The httpx client options both drivers build their client with."""

    timeout: httpx.Timeout
    limits: httpx.Limits
    verify: ssl.SSLContext | bool
    proxy: str | httpx.Proxy | None
    trust_env: bool

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` and ``httpx.AsyncClient`` alike."""
        return {
            "timeout": self.timeout,
            "limits": self.limits,
            "verify": self.verify,
            "proxy": self.proxy,
            "trust_env": self.trust_env,
            # Result links may redirect to a CDN; API calls never redirect.
            "follow_redirects": True,
        }


class Driver(Core, ABC, Generic[TransportT, SleepT]):
    """The constructor of `Client` and `AsyncClient`; each adds how it performs actions."""

    def __init__(
        self,
        provider: str | Spec,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        region: str | None = None,
        specs: SpecSet | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        limits: httpx.Limits = DEFAULT_LIMITS,
        verify: Verify = True,
        proxy: str | httpx.Proxy | None = None,
        trust_env: bool = True,
        transport: TransportT | None = None,
        poll_interval: float | None = None,
        sleep: SleepT | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        user_agent: str = "paddock-client/0.1",
    ) -> None:
        """A client for one provider.

        ``provider`` is a spec name (``"dashscope"``) or a `Spec`; ``base_url``
        defaults to the documented host of ``region``; ``api_key`` to the
        environment variable the spec names. ``timeout``, ``limits``,
        ``verify`` (a CA bundle path for a private CA), ``proxy`` and
        ``trust_env`` go to httpx; with ``trust_env`` the proxy and CA
        environment variables apply as in httpx. ``transport`` replaces the
        network (tests: ``httpx.MockTransport``, ASGI), and with it the
        environment's proxies. ``poll_interval`` overrides the spec's pace;
        ``sleep`` and ``monotonic`` let a test move a fake clock.
        """
        super().__init__(
            provider,
            base_url=base_url,
            api_key=api_key,
            region=region,
            specs=specs,
            poll_interval=poll_interval,
            user_agent=user_agent,
            monotonic=monotonic,
        )
        settings = HttpSettings(
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            limits=limits,
            verify=ssl_context(verify),
            proxy=proxy,
            trust_env=trust_env,
        )
        self._connect(settings, transport, sleep)

    @abstractmethod
    def _connect(
        self, settings: HttpSettings, transport: TransportT | None, sleep: SleepT | None
    ) -> None:
        """Open the httpx client and keep what performing actions needs."""


class Answer:
    """An answer's body as it arrives, refused past `MAX_ANSWER_BYTES` rather than buffered."""

    __slots__ = ("_parts", "_request", "_size")

    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_ANSWER_BYTES:
            url = self._request.url
            raise UnexpectedResponse(
                f"{self._request.method} {url.host}{url.path} answered more than "
                f"{MAX_ANSWER_BYTES:,} bytes; an API answer is a few KB"
            )
        self._parts.append(chunk)

    def body(self) -> bytes:
        return b"".join(self._parts)


def ssl_context(verify: Verify) -> ssl.SSLContext | bool:
    """``verify`` as httpx takes it: a path becomes a context, said at once if it is no bundle."""
    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    path = Path(verify).expanduser()
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise PaddockError(f"verify={str(verify)!r}: no such CA bundle") from None
    except ssl.SSLError as exc:
        raise PaddockError(
            f"verify={str(verify)!r} is not a PEM CA bundle ({exc.reason or exc})"
        ) from None


def failure(exc: httpx.TransportError) -> Failure:
    """A network failure as the core sees it: what went wrong and whether the request left.

    A certificate that does not verify raises `CertificateVerifyFailed` instead:
    retrying cannot help, and the person must be told which CA to pass.
    """
    reason = _verification_failure(exc)
    if reason is not None:
        try:
            where = f"{exc.request.url.host}:{exc.request.url.port or 443}"
        except RuntimeError:  # an exception raised without its request
            where = "the server"
        raise CertificateVerifyFailed(
            f"certificate verification failed for {where} ({reason}); nothing was sent. "
            "Pass verify='/path/to/ca.pem' with the CA that signed it, or set SSL_CERT_FILE"
        ) from None
    sent = not isinstance(
        exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)
    )
    return Failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, sent)


def _verification_failure(exc: BaseException) -> str | None:
    """The reason, if a certificate verification failure is behind ``exc`` (httpx chains it)."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: a chain is a handful of links
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or seen)
        seen = seen.__cause__ or seen.__context__
    return None
