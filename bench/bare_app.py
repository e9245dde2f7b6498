"""The ceiling for ``bench.load``: the two hot DashScope routes with no mock behind them.

The mock's throughput only means something next to what the same stack can do
at best on the same machine. This app is that best case: the same Starlette
and uvicorn, the same paths and methods, answers of the same shape and size,
and none of the mock's work (no auth, validation, task store, journal or
lifecycle). The ratio paddock/bare then isolates what the mock's own code
costs, independent of how fast the box is.

Run it with ``python -m bench.bare_app --port P`` (or ``python -m uvicorn
bench.bare_app:app``); ``main`` uses exactly the uvicorn settings that
``paddock serve`` uses, so the comparison is fair.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.traffic import CREATE_PATH, POLL_PREFIX

__all__ = ["CREATED", "PREFIX", "SUCCEEDED", "TASK_ID", "app", "main"]

PREFIX = "/dashscope"  # where paddock serves DashScope, so the URLs match too
TASK_ID = "95d8e110-1c99-450f-ad24-8aa6fb2c3702"

# Same keys and about the same byte size as the mock's answers (137 and ~600
# bytes): serialising a smaller body would flatter the ceiling. WireMock's
# stubs answer these bodies too.
CREATED: dict[str, Any] = {
    "output": {"task_status": "PENDING", "task_id": TASK_ID},
    "request_id": "488ba77d-01f9-4c96-b649-8c40ce9d2854",
}
SUCCEEDED: dict[str, Any] = {
    "request_id": "a32df753-f8a3-44f6-9833-c8e89e2aeb1c",
    "output": {
        "task_id": TASK_ID,
        "task_status": "SUCCEEDED",
        "submit_time": "2026-11-21 14:14:05.271",
        "scheduled_time": "2026-11-21 14:14:06.127",
        "end_time": "2026-11-21 14:14:08.620",
        "orig_prompt": "A cat running on the grass",
        "video_url": (
            "http://127.0.0.1:8000/_storage/results/dashscope/"
            f"{TASK_ID}.mp4?Expires=1795328048&OSSAccessKeyId=PADDOCKMOCKACCESSKEY"
            "&Signature=Hdkp5scgx-xIqRRQPfxFqeo29Ps"
        ),
    },
    "usage": {
        "duration": 5,
        "input_video_duration": 0,
        "output_video_duration": 5,
        "video_count": 1,
        "SR": "720",
    },
}


async def create(request: Request) -> JSONResponse:
    """Read the body, as any real create handler must, and answer a fixed PENDING task."""
    await request.body()
    return JSONResponse(CREATED)


async def poll(request: Request) -> JSONResponse:
    """Answer a fixed SUCCEEDED task, the state the bench's polled task is in on the mock."""
    return JSONResponse(SUCCEEDED)


app = Starlette(
    routes=[
        Route(PREFIX + CREATE_PATH, create, methods=["POST"]),
        Route(PREFIX + POLL_PREFIX + "{task_id}", poll, methods=["GET"]),
    ]
)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``app`` with the uvicorn settings of ``paddock serve`` (see ``paddock.cli``).

    Like ``paddock serve`` it binds the socket itself (backlog 2048) and hands
    it to uvicorn, so the two servers differ only in the application.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
