"""Build a provider's create body from canonical inputs, reading the layout from its spec.

The inverse of what ``contracts.validate`` reads: DashScope and APIYI nest
``input.prompt``, ``input.media[]`` and ``parameters``; AnyFast puts
everything at the top level and names media fields per model. The client,
the conformance strategies and the tests all build bodies here, so none of
them carries a provider's layout in code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from contracts.spec import ModelRules, Spec

__all__ = ["build_create_body", "create_headers", "path_parts", "set_path"]


_PARTS: dict[str, tuple[str, ...]] = {}


def path_parts(dotted: str) -> tuple[str, ...]:
    """``"a.b.c"`` as ``("a", "b", "c")``, split once per path.

    A spec has a few dozen paths and every create and poll walks several of
    them, on both the client's side and the mock's.
    """
    parts = _PARTS.get(dotted)
    if parts is None:
        if len(_PARTS) >= 4096:  # parameter names come from callers too: stay bounded
            _PARTS.clear()
        parts = _PARTS[dotted] = tuple(dotted.split("."))
    return parts


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the objects on the way."""
    node = doc
    parts = path_parts(dotted)
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def build_create_body(
    spec: Spec,
    model: str,
    *,
    prompt: str | None = None,
    media: Sequence[tuple[str, str]] = (),
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body this provider expects for a create call.

    ``media`` is ``(media_type, url)`` pairs in canonical types
    (``first_frame``, ``reference_image``, ``driving_audio``...). Parameters go
    in the spec's first parameter container.
    """
    rules = spec.models.get(model)
    body: dict[str, Any] = {}
    set_path(body, spec.model_path, model)
    for path in spec.required_objects:
        set_path(body, path, {})
    if prompt is not None:
        set_path(body, spec.prompt_path, prompt)
    if media:
        if spec.media_form == "typed_list":
            set_path(body, spec.media_path or "media", [{"type": t, "url": u} for t, u in media])
        else:
            _place_field_media(body, rules, media)
    container = spec.parameter_containers[0]
    for name, value in (parameters or {}).items():
        set_path(body, f"{container}.{name}" if container else name, value)
    return body


def _place_field_media(
    body: dict[str, Any], rules: ModelRules | None, media: Sequence[tuple[str, str]]
) -> None:
    grouped: dict[str, list[str]] = {}
    for media_type, url in media:
        grouped.setdefault(media_type, []).append(url)
    for media_type, urls in grouped.items():
        rule = rules.media.get(media_type) if rules else None
        if rule is None or not rule.fields:
            # Not a media type of this model: send it under its own name so the
            # service (or the local check) rejects it by name.
            body[media_type] = urls[0] if len(urls) == 1 else urls
            continue
        single = next((f for f in rule.fields if f.form == "url"), None)
        listed = next((f for f in rule.fields if f.form == "url_list"), None)
        if len(urls) == 1 and single is not None:
            body[single.name] = urls[0]
        elif listed is not None:
            body[listed.name] = list(urls)
        else:
            body[rule.fields[0].name] = urls[0]


def create_headers(spec: Spec, api_key: str | None) -> dict[str, str]:
    """The headers a create call needs: auth, content type and the spec's required headers."""
    headers = {"Content-Type": spec.operations["create"].content_type or "application/json"}
    if api_key is not None:
        headers[spec.auth_header] = f"{spec.auth_scheme} {api_key}"
    for rule in spec.operations["create"].headers:
        headers[rule.name] = rule.value
    return headers
