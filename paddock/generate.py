"""``paddock generate``, ``status`` and ``cancel``: the reference client on the command line.

Failures a person can fix (a missing key, a rule the request breaks, a local
file for a provider that wants URLs) are one line and status 2; failures of
the task or the provider are one line and status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from contracts.client import Client, Task
from contracts.errors import (
    LocalValidationError,
    PaddockError,
    PublicURLRequired,
    TaskFailed,
    UnsupportedOperation,
)
from contracts.media import MediaError, probe_file
from contracts.spec import SpecError, load_specs

__all__ = ["Progress", "run"]


class _Mistake(Exception):
    """One line for the user, exit status 2."""


def run(args: argparse.Namespace) -> int:
    try:
        client = _client(args)
    except _Mistake as exc:
        return _fail(str(exc), 2)
    with client:
        try:
            if args.command == "generate":
                return _generate(client, args)
            if args.command == "status":
                task = client.get(args.task_id)
                _print_task(task, args.json)
                return 0
            client.cancel(args.task_id)
            print(
                json.dumps({"id": args.task_id, "canceled": True})
                if args.json
                else f"canceled {args.task_id}"
            )
            return 0
        except (LocalValidationError, PublicURLRequired, UnsupportedOperation) as exc:
            return _fail(str(exc), 2)
        except TaskFailed as exc:
            if args.json:
                print(json.dumps(exc.task.to_json()))
            return _fail(str(exc), 1)
        except PaddockError as exc:
            if "no API key" in str(exc):
                return _fail(str(exc), 2)
            return _fail(str(exc), 1)


def _client(args: argparse.Namespace) -> Client:
    try:
        specs = load_specs(args.specs)
    except SpecError as exc:
        raise _Mistake(f"broken spec: {exc}") from None
    if args.provider not in specs.specs:
        raise _Mistake(f"--provider {args.provider!r} is not one of {', '.join(specs.names())}")
    spec = specs[args.provider]
    if args.region and args.region not in spec.regions:
        raise _Mistake(
            f"--region {args.region!r} is not one of {', '.join(spec.regions)} for {spec.provider}"
        )
    try:
        client = Client(
            spec,
            base_url=args.base_url,
            region=args.region,
            poll_interval=getattr(args, "poll_interval", None),
        )
    except PaddockError as exc:  # a base URL that cannot work, a key with a line break
        raise _Mistake(str(exc)) from None
    if not client.has_key:
        raise _Mistake(
            f"no API key: set {spec.api_key_env} (the key is read from the environment only)"
        )
    return client


def _generate(client: Client, args: argparse.Namespace) -> int:
    spec = client.spec
    if args.model not in spec.models:
        return _fail(
            f"--model {args.model!r} is not a {spec.provider} model; "
            f"known: {', '.join(spec.models)}",
            2,
        )
    if args.out.suffix.lower() != ".mp4":
        return _fail(f"--out {args.out} should end in .mp4", 2)
    if not args.out.parent.exists():
        return _fail(f"--out: the folder {args.out.parent} does not exist", 2)
    media: list[tuple[str, str]] = [("first_frame", v) for v in args.image]
    media += [("reference_image", v) for v in args.reference]
    if args.audio:
        media.append(("driving_audio", args.audio))
    parameters: dict[str, Any] = {
        name: value
        for name, value in (
            ("resolution", args.resolution),
            ("duration", args.duration),
            ("ratio", args.ratio),
            ("seed", args.seed),
        )
        if value is not None
    }
    progress = Progress(sys.stderr, quiet=args.json)
    task = client.submit(args.model, prompt=args.prompt, media=media, **parameters)
    progress.update(task)
    done = client.wait(task.id, timeout=args.timeout, on_update=progress.update)
    progress.finish()
    path = client.download(done, args.out)
    try:
        info = probe_file(path)
    except MediaError as exc:
        return _fail(f"downloaded {path} but it is not a playable video: {exc}", 1)
    if args.json:
        out = done.to_json() | {
            "file": str(path),
            "bytes": info.bytes,
            "width": info.width,
            "height": info.height,
            "duration": info.duration,
        }
        print(json.dumps(out))
    else:
        print(
            f"saved {path} ({info.duration:.1f} s, {info.width}x{info.height}, "
            f"{info.bytes:,} bytes; task {done.id})"
        )
    return 0


class Progress:
    """A live status line on a terminal; one plain line per change otherwise."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def update(self, task: Task) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        progress = f" {task.progress:>3}%" if task.progress is not None else ""
        line = f"{task.provider} {task.id}  {task.state:<9}{progress}  {elapsed:6.1f} s"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


def _print_task(task: Task, as_json: bool) -> None:
    if as_json:
        print(json.dumps(task.to_json()))
        return
    parts = [task.id, task.state]
    if task.progress is not None:
        parts.append(f"{task.progress}%")
    if task.error_code:
        parts.append(f"{task.error_code}: {task.error_message}")
    if task.result_url:
        parts.append(task.result_url)
    print("  ".join(parts))


def _fail(message: str, status: int) -> int:
    print(f"paddock: {message}", file=sys.stderr)
    return status
