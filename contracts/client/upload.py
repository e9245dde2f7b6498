"""A local file through the provider's upload-policy flow, as the spec's ``uploads.form`` states it.

The flow (DashScope's, as its official SDK runs it): ask the policy
operation for a signed policy, POST the file with the policy's fields as a
multipart form to the storage host it names, then name the file in the
create by the spec's upload scheme (``oss://<key>``). Which query the policy
request carries, which form fields the storage host wants and how the object
key is spelled are spec data; nothing here names a vendor field.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from contracts.client.actions import Failure, Send, Steps
from contracts.errors import LocalValidationError, PaddockError, UnexpectedResponse

if TYPE_CHECKING:
    from contracts.client.core import Core

__all__ = ["upload"]


def upload(client: Core, model: str, path: Path) -> Steps[str]:
    """Upload one file; the result is the URL a create names it by. Never retried: the spec's
    form may forbid overwriting, so a second try after a lost answer would be refused anyway."""
    spec = client.spec
    form = spec.upload_form
    if form is None or spec.upload_scheme is None or spec.upload_response is None:
        raise AssertionError("upload() is only called for a spec with uploads.form")
    size = path.stat().st_size
    if size > spec.upload_max_bytes:
        # Said before the file is read into memory or anything is sent.
        raise LocalValidationError(
            f"{path.name} is {size:,} bytes; {spec.provider} takes uploads up to "
            f"{spec.upload_max_bytes:,}",
            rule="upload_too_large",
            field=None,
            source="uploads.max_file_bytes",
        )
    query = {k: str(v) for k, v in form.policy_query.render({"model": model}).items()}
    policy = client._url("upload_policy")
    reply = yield from client._read(Send("GET", policy, client._auth(), params=query))
    try:
        answer = orjson.loads(reply.body)
        view = spec.upload_response.parse(answer, strict=False)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise UnexpectedResponse(f"{spec.provider} upload policy answer: {exc}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    view |= {"file.name": path.name, "file.content_type": content_type}
    key = form.key.render(view)
    view["upload.key"] = key
    url = form.url.render(view)
    rendered = form.fields.render(view)
    lacking = [
        spelled for name, spelled in form.fields.placeholders().items() if name not in rendered
    ]
    for template, value in ((form.url, url), (form.key, key)):
        if not isinstance(value, str):
            lacking.append(str(template.source))
    if lacking:
        raise UnexpectedResponse(
            f"{spec.provider}'s upload policy answer lacks what its upload form needs: "
            + ", ".join(lacking)
        )
    fields = {name: str(value) for name, value in rendered.items()}
    files = {form.file_field: (path.name, path.read_bytes(), content_type)}
    # The storage host gets no Authorization: the signed policy is the credential.
    result = yield Send("POST", url, {"User-Agent": client._user_agent}, data=fields, files=files)
    if isinstance(result, Failure) or result.status != form.success_status:
        detail = result.error if isinstance(result, Failure) else f"HTTP {result.status}"
        raise PaddockError(f"uploading {path.name} to {spec.provider}'s storage failed: {detail}")
    return f"{spec.upload_scheme}{key}"
