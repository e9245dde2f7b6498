"""What a submit is given, checked before anything is sent: media probed, rules of the spec applied.

A request the provider would refuse is refused here with the rule, the field
and the rule's source, so no paid call is spent learning it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from contracts.bodies import build_create_body
from contracts.errors import LocalValidationError
from contracts.media import MediaError, MediaInfo, decode_data_uri, probe, probe_file
from contracts.spec import Spec
from contracts.validate import Violation, check_remote_url, validate_create

__all__ = ["MediaInput", "Prepared", "check_locally", "prepare_media"]

MediaInput = Sequence[tuple[str, str]] | Mapping[str, str | Sequence[str]]
"""``[("first_frame", "cat.png")]`` or ``{"first_frame": "cat.png", "reference_image": [...]}``;
each value an http(s) URL, a ``data:`` URI, or a local path (``file://`` or plain)."""


class Prepared(NamedTuple):
    """One media input: its type, the URL to check (``file://`` for a local file), what probing
    found, and the local path when it must be uploaded first."""

    type: str
    url: str
    info: MediaInfo | None
    path: Path | None


def prepare_media(spec: Spec, media: MediaInput | None) -> list[Prepared]:
    """Each media input as a `Prepared`, probed where the client can read it."""
    pairs: list[tuple[str, str]] = []
    if isinstance(media, Mapping):
        for media_type, value in media.items():
            values = [value] if isinstance(value, str) else list(value)
            pairs.extend((media_type, v) for v in values)
    elif media:
        pairs.extend((str(t), str(v)) for t, v in media)
    return [_prepare(spec, media_type, value) for media_type, value in pairs]


def _prepare(spec: Spec, media_type: str, value: str) -> Prepared:
    if value.startswith(("http://", "https://")):
        return Prepared(media_type, value, None, None)
    if value.startswith("data:"):
        try:
            return Prepared(media_type, value, probe(decode_data_uri(value)[1]), None)
        except MediaError as exc:
            raise _unreadable(media_type, str(exc)) from None
    if spec.upload_scheme and value.startswith(spec.upload_scheme):
        return Prepared(media_type, value, None, None)
    path = Path(unquote(urlsplit(value).path) if value.startswith("file://") else value)
    path = path.expanduser()
    if not path.is_file():
        raise LocalValidationError(
            f"{media_type}: no such file {str(path)!r}",
            rule="media_url",
            field=media_type,
            source="local",
        )
    try:
        info = probe_file(path)
    except MediaError as exc:
        raise _unreadable(media_type, f"{path.name}: {exc}") from None
    return Prepared(media_type, path.resolve().as_uri(), info, path)


def _unreadable(media_type: str, detail: str) -> LocalValidationError:
    return LocalValidationError(
        f"{media_type}: {detail}", rule="media_unreadable", field=media_type, source="local"
    )


def check_locally(
    spec: Spec,
    headers: Mapping[str, str],
    model: str,
    prompt: str | None,
    media: Sequence[Prepared],
    parameters: Mapping[str, Any],
) -> dict[str, Any]:
    """The wire body for these inputs, after the checks the provider would make.

    Returned so that, when no local file needs uploading first, the body
    checked is the body sent, built once. ``headers`` are those the create
    will carry (lower-case names), as the provider's header rules see them.
    """
    body = build_create_body(
        spec, model, prompt=prompt, media=[(m.type, m.url) for m in media], parameters=parameters
    )
    infos = {m.url: m.info for m in media}
    result = validate_create(
        spec, headers, body, _LocalResolver(infos, spec.upload_scheme), note_ignored=False
    )
    if isinstance(result, Violation):
        error, message = result.resolve(spec)
        rule = spec.violations[result.kind]
        where = f" at {result.field}" if result.field else ""
        raise LocalValidationError(
            f"{spec.provider} would refuse this ({error.code}{where}): {message}",
            rule=result.kind,
            field=result.field,
            source=rule.source,
        )
    return body


class _LocalResolver:
    """What the client can know of media before sending: probed files and data URIs."""

    def __init__(self, infos: Mapping[str, MediaInfo | None], upload_scheme: str | None) -> None:
        self._infos = infos
        self._upload_scheme = upload_scheme

    def resolve(self, url: str) -> tuple[str, MediaInfo | None]:
        info = self._infos.get(url)
        if url.startswith("file://"):
            return "local", info
        if url.startswith("data:"):
            return "data", info
        if self._upload_scheme and url.startswith(self._upload_scheme):
            return "upload", None
        check_remote_url(url)  # raises MediaUnavailable, which the validator reports
        return "remote", None
