"""The reference client: what a careful team would write to call these providers in production.

``Client`` (blocking) and ``AsyncClient`` (asyncio) are one implementation.
Each operation is a generator of actions in `core` (sans-IO: it reads
everything provider-specific from the spec); the two drivers, `sync` and
`aio`, perform the actions with httpx's own transports, so proxies, CA
bundles and connection limits work as httpx documents them.

Modules: `actions` (what an operation yields and gets back), `core` (the
operations), `inputs` (local checks and media), `upload` (the spec's upload
flow), `download` (fetching a result), `reading` (answers into tasks and
typed errors), `driver` (the shared constructor and httpx settings), `sync`
and `aio` (the drivers).
"""

from __future__ import annotations

from contracts.client.aio import AsyncClient
from contracts.client.driver import DEFAULT_LIMITS, DEFAULT_TIMEOUT, MAX_ANSWER_BYTES
from contracts.client.inputs import MediaInput
from contracts.client.reading import Task
from contracts.client.sync import Client
from contracts.errors import (
    AuthenticationError,
    CertificateVerifyFailed,
    ContentRejected,
    DownloadError,
    LocalValidationError,
    PaddockError,
    PermissionDenied,
    ProviderError,
    PublicURLRequired,
    QuotaExceeded,
    RateLimited,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
    UnexpectedResponse,
    UnsupportedOperation,
    UpstreamUnavailable,
    ValidationError,
    WaitTimeout,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "AsyncClient",
    "AuthenticationError",
    "CertificateVerifyFailed",
    "Client",
    "ContentRejected",
    "DownloadError",
    "LocalValidationError",
    "MediaInput",
    "PaddockError",
    "PermissionDenied",
    "ProviderError",
    "PublicURLRequired",
    "QuotaExceeded",
    "RateLimited",
    "Task",
    "TaskExpired",
    "TaskFailed",
    "TaskNotFound",
    "UnexpectedResponse",
    "UnsupportedOperation",
    "UpstreamUnavailable",
    "ValidationError",
    "WaitTimeout",
]
