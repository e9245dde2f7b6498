"""Typed errors of the reference client.

A provider's answer becomes one of these by the catalogue's ``category``
(spec data), never by matching codes in Python, so a code a provider adds
tomorrow lands in the right class once its spec says what kind it is.
Messages carry the provider's code and words and the request's method and
path, never a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contracts.client import Task

__all__ = [
    "AuthenticationError",
    "CertificateVerifyFailed",
    "ContentRejected",
    "DownloadError",
    "LocalValidationError",
    "PaddockError",
    "PermissionDenied",
    "ProviderError",
    "PublicURLRequired",
    "QuotaExceeded",
    "RateLimited",
    "TaskExpired",
    "TaskFailed",
    "TaskNotFound",
    "UnexpectedResponse",
    "UnsupportedOperation",
    "UpstreamUnavailable",
    "ValidationError",
    "WaitTimeout",
    "error_for_category",
]


class PaddockError(Exception):
    """Everything the client raises."""


# -- raised before anything is sent -------------------------------------------------------------


class LocalValidationError(PaddockError, ValueError):
    """The request breaks a rule of the spec; nothing was sent.

    ``rule`` is the violation kind (``param_range``...), ``field`` the body
    path, ``source`` where the rule comes from.
    """

    def __init__(self, message: str, *, rule: str, field: str | None, source: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field
        self.source = source


class PublicURLRequired(PaddockError, ValueError):
    """A local file was given to a provider that only takes public URLs."""


class UnsupportedOperation(PaddockError):
    """The provider has no such operation (e.g. cancel on AnyFast)."""


class CertificateVerifyFailed(PaddockError, ConnectionError):
    """The server's TLS certificate did not verify against the CA bundle in use; nothing was sent.

    Never retried: waiting does not change a certificate. Pass the CA that
    signed it (``verify="ca.pem"``, or ``SSL_CERT_FILE``).
    """


# -- the provider said no -----------------------------------------------------------------------


class ProviderError(PaddockError):
    """An error answer from the provider, with its status, code and message."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None,
        request_id: str | None = None,
        raw: Any = None,
        request: str = "",
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        where = f" ({request})" if request else ""
        label = f"{status} {code}" if code else str(status)
        super().__init__(f"{label}: {message}{where}")
        self.status = status
        self.code = code
        self.provider_message = message
        self.request_id = request_id
        self.raw = raw
        self.request = request
        self.field = field
        self.retry_after = retry_after


class AuthenticationError(ProviderError):
    """The key is missing or not accepted."""


class PermissionDenied(ProviderError):
    """The key is valid but may not do this (model not purchased, async switch missing...)."""


class ValidationError(ProviderError):
    """The provider refused the request's content; ``field`` names it when the message does."""


class ContentRejected(ProviderError):
    """Moderation: input or output was judged inappropriate."""


class RateLimited(ProviderError):
    """Too many requests; ``retry_after`` is the provider's hint in seconds, when it gave one."""


class QuotaExceeded(ProviderError):
    """Balance, arrearage or allocation: waiting will not help, paying or asking might."""


class TaskNotFound(ProviderError):
    """The provider answered that no such task exists (for this key)."""


class UpstreamUnavailable(ProviderError):
    """A 5xx: the provider or its upstream failed; safe to retry reads, not creates."""


class UnexpectedResponse(PaddockError):
    """The provider answered in a shape its spec does not describe (see ``paddock drift``)."""


_BY_CATEGORY: dict[str, type[ProviderError]] = {
    "authentication": AuthenticationError,
    "permission": PermissionDenied,
    "validation": ValidationError,
    "content": ContentRejected,
    "rate_limit": RateLimited,
    "quota": QuotaExceeded,
    "not_found": TaskNotFound,
    "unavailable": UpstreamUnavailable,
}


def error_for_category(category: str) -> type[ProviderError]:
    return _BY_CATEGORY.get(category, ProviderError)


# -- the task itself ----------------------------------------------------------------------------


class TaskFailed(PaddockError):
    """The task ended FAILED (or CANCELED); ``code`` and ``message`` are the provider's."""

    def __init__(self, task: Task) -> None:
        detail = f"{task.error_code}: {task.error_message}" if task.error_code else task.state
        super().__init__(f"task {task.id} ended {task.state} ({detail})")
        self.task = task
        self.code = task.error_code
        self.provider_message = task.error_message


class TaskExpired(PaddockError):
    """The provider no longer knows the task (UNKNOWN): past its retention, or never ours."""

    def __init__(self, task: Task) -> None:
        super().__init__(f"task {task.id} is UNKNOWN to {task.provider}: expired or not this key's")
        self.task = task


class WaitTimeout(PaddockError, TimeoutError):
    """``wait`` gave up; ``task`` is the last state seen (the task may still finish)."""

    def __init__(self, task: Task, seconds: float) -> None:
        super().__init__(f"task {task.id} still {task.state} after {seconds:g} s")
        self.task = task


class DownloadError(PaddockError):
    """The result could not be fetched or is not the video it should be."""
