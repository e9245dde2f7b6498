"""A finished task's video into a file: streamed, resumed, renewed, and checked to be an MP4.

Result links are signed URLs on object storage, so the request carries no
Authorization (signed URLs refuse it), a cut transfer resumes with ``Range``
from the partial file, and an expired link is renewed by polling again where
the provider re-issues one. The file appears under its name only once whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.client.actions import Failure, Fetch, Sleep, Steps
from contracts.client.reading import Task, content_total
from contracts.errors import DownloadError

if TYPE_CHECKING:
    from contracts.client.core import Core

__all__ = ["MAX_TRANSFER_FAILURES", "download"]

MAX_TRANSFER_FAILURES = 4
_MAX_RENEWALS = 2
_VIDEO_TYPES = ("video/", "application/octet-stream", "binary/")


def download(client: Core, task: Task, path: Path, refresh: bool) -> Steps[Path]:
    """Fetch the task's result into ``path`` (through ``path.part``) and return ``path``."""
    if not task.succeeded or not task.result_url:
        task = yield from client._get(task.id)
    if not task.succeeded or not task.result_url:
        raise DownloadError(f"task {task.id} is {task.state}; only a SUCCEEDED task has a video")
    part = path.with_name(path.name + ".part")
    url = task.result_url
    renewed = failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": client._user_agent}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        reply = yield Fetch(url, headers, part, offset)
        if isinstance(reply, Failure):
            failures += 1
            if failures > MAX_TRANSFER_FAILURES:
                raise DownloadError(f"downloading task {task.id} failed: {reply.error}")
            yield Sleep(client._jitter(min(2.0**failures, 15.0)))
            continue
        if reply.status in (401, 403, 404) and refresh and renewed < _MAX_RENEWALS:
            # Signed links expire; a fresh poll may hand out a fresh one.
            renewed += 1
            fresh = yield from client._get(task.id)
            if not fresh.result_url or fresh.result_url == url:
                raise DownloadError(
                    f"the result URL of task {task.id} answers {reply.status} and "
                    f"{client.spec.provider} gave no new one (expired after its retention?)"
                )
            url, task = fresh.result_url, fresh
            continue
        if reply.status == 416:  # the partial file is not a prefix of this one
            part.unlink(missing_ok=True)
            continue
        if reply.status not in (200, 206):
            raise DownloadError(f"the result URL of task {task.id} answered HTTP {reply.status}")
        content_type = reply.headers.get("content-type", "")
        if not content_type.startswith(_VIDEO_TYPES):
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"the result of task {task.id} is {content_type or 'untyped'}, not a video"
            )
        total = content_total(reply.headers, offset if reply.status == 206 else 0)
        size = part.stat().st_size
        if total is None or size >= total:
            break
        failures += 1  # cut short: resume from where it stopped
        if failures > MAX_TRANSFER_FAILURES:
            raise DownloadError(f"download of task {task.id} kept stopping at {size}/{total} bytes")
    with part.open("rb") as handle:
        head = handle.read(12)
    if head[4:8] != b"ftyp":
        part.unlink(missing_ok=True)
        raise DownloadError(f"the result of task {task.id} is not an MP4 file")
    os.replace(part, path)
    return path
