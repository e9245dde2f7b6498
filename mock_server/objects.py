"""The mock's object storage endpoints: signed result downloads and policy uploads.

They answer as object storage does (XML errors, no provider envelope),
because that is what the providers' clients meet on these URLs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts.lifecycle import state_at
from contracts.media import MediaError, probe
from mock_server.reading import BodyError, BodyTooLarge, declared_length, limited_receive
from mock_server.storage import read_policy
from mock_server.store import Blob, StoreFull

if TYPE_CHECKING:
    from mock_server.app import MockState

__all__ = ["routes"]

# Room for the multipart form's own fields around the file itself.
_FORM_OVERHEAD = 64 * 1024


def oss_error(status: int, code: str, message: str) -> Response:
    # OSS answers in XML; clients only read the status, but a person reads the body.
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(
        body,
        status_code=status,
        media_type="application/xml",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def routes(state: MockState) -> list[BaseRoute]:
    return [
        Route(
            "/_storage/results/{provider}/{task_id}.mp4",
            _download(state),
            methods=["GET", "HEAD"],
        ),
        Route("/_storage/oss", _upload(state), methods=["POST"]),
    ]


def _download(state: MockState) -> Any:
    async def download(request: Request) -> Response:
        provider = request.path_params["provider"]
        task_id = request.path_params["task_id"]
        path = request.url.path
        expires = request.query_params.get("Expires", "")
        signature = request.query_params.get("Signature", "")
        spec = state.specs.specs.get(provider)
        if (
            spec is None
            or not expires.isdigit()
            or len(expires) > 12
            or not state.signer.verify(signature, path, expires)
        ):
            return oss_error(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
            )
        if spec.refuses_authorization and "authorization" in request.headers:
            return oss_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided "
                "(an Authorization header was sent with a signed URL).",
            )
        now = state.clock.now()
        if now > int(expires):
            return oss_error(403, "AccessDenied", "Request has expired.")
        task = await state.store.get_task(provider, task_id)
        # The signed link, not the task id's retention, decides how long the file
        # can be fetched: a link handed out near the end of the task's 24 h
        # stays good for its own 24 h, as object storage would serve it.
        if task is None or state_at(task, now, math.inf) != "SUCCEEDED":
            return oss_error(404, "NoSuchKey", "The specified key does not exist.")
        shape = task.output
        data = await state.videos.aget(shape.width, shape.height, shape.duration, shape.fps)
        return ranged(request, data, "video/mp4")

    return download


def _byte_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """(start, end) for a satisfiable single range; None to ignore the header; False for 416."""
    if not header.startswith("bytes=") or "," in header or len(header) > 64:
        return None
    first, _, last = header[6:].strip().partition("-")
    if not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
        return None  # unparseable: ignored, as RFC 9110 says
    if not first:
        return (max(size - int(last), 0), size - 1) if size and int(last) else False
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    return (start, end) if start < size else False


def ranged(request: Request, data: bytes, content_type: str) -> Response:
    """Serve bytes with single-range support, so an interrupted download can resume."""
    headers = {"Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff"}
    size = len(data)
    wanted = _byte_range(request.headers.get("range", ""), size)
    if wanted is False:
        return Response(b"", 416, headers={"Content-Range": f"bytes */{size}"})
    if isinstance(wanted, tuple):
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        body = b"" if request.method == "HEAD" else data[start : end + 1]
        return Response(body, 206, headers=headers, media_type=content_type)
    headers["Content-Length"] = str(size)
    return Response(
        b"" if request.method == "HEAD" else data, 200, headers=headers, media_type=content_type
    )


def _policy_terms(doc: dict[str, Any]) -> tuple[float, str | None, int, str]:
    """(expiration, key prefix, size limit, owner) from a policy document we issued."""
    expiration = doc.get("expiration")
    prefix: str | None = None
    limit = 0
    conditions = doc.get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        if not isinstance(condition, list) or len(condition) != 3:
            continue
        if condition[:2] == ["starts-with", "$key"]:
            prefix = str(condition[2])
        elif condition[0] == "content-length-range" and isinstance(condition[2], int):
            limit = condition[2]
    expires = float(expiration) if isinstance(expiration, (int, float)) else 0.0
    return expires, prefix, limit, str(doc.get("owner", ""))


def _upload(state: MockState) -> Any:
    largest = max((spec.upload_max_bytes for spec in state.specs), default=0)

    async def upload(request: Request) -> Response:
        # The body is bounded while it arrives: the largest file any policy allows,
        # plus the form's own fields. Nothing past that is spooled.
        limit = largest + _FORM_OVERHEAD
        declared = declared_length(request.scope["headers"])
        if declared is not None and declared > limit:
            return oss_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
            )
        receive = limited_receive(request.receive, limit, state.options.body_timeout)
        bounded = Request(request.scope, receive)
        try:
            form = await bounded.form(max_files=1, max_fields=32, max_part_size=64 * 1024)
        except BodyTooLarge:
            return oss_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
            )
        except BodyError as exc:
            return oss_error(400, "IncompleteBody", f"The upload did not arrive whole: {exc}.")
        except Exception as exc:  # malformed multipart of any kind
            return oss_error(400, "InvalidArgument", f"Could not read the multipart form: {exc}")
        try:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            policy = fields.get("policy", "")
            key = fields.get("key", "")
            upload_file = form.get("file")
            if not state.signer.verify(fields.get("Signature", ""), "policy", policy):
                return oss_error(
                    403, "SignatureDoesNotMatch", "The policy signature does not match."
                )
            doc = read_policy(policy)
            if doc is None:
                return oss_error(400, "InvalidPolicyDocument", "The policy is not valid.")
            expiration, prefix, limit, owner = _policy_terms(doc)
            if state.clock.now() > expiration:
                return oss_error(
                    403, "AccessDenied", "Invalid according to Policy: Policy expired."
                )
            if not key or prefix is None or not key.startswith(str(prefix) + "/") or ".." in key:
                return oss_error(
                    403,
                    "AccessDenied",
                    "Invalid according to Policy: the key is outside the upload directory.",
                )
            if not isinstance(upload_file, UploadFile):
                return oss_error(400, "InvalidArgument", "The form has no file field.")
            data = await upload_file.read(limit + 1)
            if len(data) > limit:
                return oss_error(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
                )
            store_key = f"uploads/{key}"
            if (
                fields.get("x-oss-forbid-overwrite") == "true"
                and await state.store.get_blob(store_key) is not None
            ):
                return oss_error(
                    409, "FileAlreadyExists", "The object you specified already exists."
                )
            try:
                info = probe(data)
                content_type = info.mime or "application/octet-stream"
            except MediaError:
                # Stored anyway, as object storage would; a create naming it fails then.
                info, content_type = None, "application/octet-stream"
            try:
                await state.store.put_blob(store_key, Blob(data, content_type, info, owner))
            except StoreFull as exc:
                return oss_error(403, "QuotaExceeded", str(exc))
            await state.journal.record(
                at=state.clock.now(),
                method="POST",
                path=request.url.path,
                provider=None,
                operation="upload",
                status=200,
                headers=request.scope["headers"],
                body=b"",
                elapsed_ms=0.0,
                marks={"key": key[:256], "bytes": len(data)},
            )
            return Response(b"", 200)
        finally:
            await form.close()

    return upload
