"""Every resource the mock holds has a bound, and hostile input meets it with a clear 4xx.

Bodies are bounded while they arrive, one key cannot crowd out another, lists
are paged, and values nested a thousand deep get the provider's envelope.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from mock_server.app import Options
from mock_server.store import Limits
from tests.conftest import (
    CREATE_PATHS,
    HEADERS,
    LiveServer,
    Mock,
    stored_tasks,
)

T2V = {"model": "happyhorse-1.0-t2v", "input": {"prompt": "a horse"}, "parameters": {}}
I2V_ANYFAST = {"model": "happyhorse-1.0-i2v", "prompt": "x", "image": "https://a.example/1.png"}


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


@pytest.mark.parametrize("provider", ["dashscope", "apiyi", "anyfast"])
@pytest.mark.parametrize("depth", [990, 1022, 5000])
def test_values_nested_thousands_deep_get_the_envelope(
    mock: Mock, provider: str, depth: int
) -> None:
    import orjson

    bodies = {
        "dashscope": [
            {**T2V, "model": nested(depth)},
            {**T2V, "input": {"prompt": nested(depth, kind="dict")}},
            {**T2V, "parameters": {"duration": nested(depth)}},
            {"model": "happyhorse-1.0-i2v", "input": {"prompt": "x", "media": [nested(depth)]}},
        ],
        "anyfast": [
            {**I2V_ANYFAST, "image": nested(depth)},
            {**I2V_ANYFAST, "duration": nested(depth, kind="dict")},
            {"model": "happyhorse-1.0-i2v", "prompt": "x", "images": nested(depth)},
        ],
    }
    for body in bodies.get(provider, bodies["dashscope"]):
        # orjson writes at most 255 levels; the stdlib writes any depth with room to recurse.
        raw = _dumps_deep(body)
        answer = mock.client.post(CREATE_PATHS[provider], content=raw, headers=HEADERS[provider])
        assert 400 <= answer.status_code < 500, answer.text[:200]
        assert orjson.loads(answer.content), "an envelope, not an empty body"
    assert mock.tasks() == []


def _dumps_deep(value: Any) -> bytes:
    """JSON of any depth without recursion, for bodies no serializer in this process writes."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and item in ("]", "}", ","):
            out.append(item)
        elif isinstance(item, tuple):
            out.append(f'"{item[0]}":')
            stack.append(item[1])
        elif isinstance(item, list):
            stack.append("]")
            for index, child in enumerate(reversed(item)):
                if index:
                    stack.append(",")
                stack.append(child)
            out.append("[")
        elif isinstance(item, dict):
            stack.append("}")
            for index, pair in enumerate(reversed(list(item.items()))):
                if index:
                    stack.append(",")
                stack.append(pair)
            out.append("{")
        else:
            import json

            out.append(json.dumps(item))
    return "".join(out).encode()


def test_a_400_digit_number_does_not_move_the_clock(mock: Mock) -> None:
    before = mock.state.clock.now()
    for raw in (b'{"seconds": 1' + b"0" * 400 + b"}", b'{"seconds": 1e400}', nested_json(3000)):
        answer = mock.client.post(
            "/_paddock/clock/advance", content=raw, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400 and "error" in answer.json()
    assert mock.state.clock.now() == before


def nested_json(depth: int) -> bytes:
    return b'{"seconds":' + b"[" * depth + b"]" * depth + b"}"


def test_one_key_cannot_evict_another(make_mock: Callable[..., Mock]) -> None:
    mock = make_mock(limits=Limits(max_tasks_per_key=3))
    other = {**HEADERS["dashscope"], "Authorization": "Bearer sk-other"}
    theirs = mock.client.post(CREATE_PATHS["dashscope"], json=T2V, headers=other).json()
    mine = [mock.create("dashscope", T2V).json()["output"]["task_id"] for _ in range(5)]
    states = [mock.query("dashscope", t).json()["output"]["task_status"] for t in mine]
    assert states == ["UNKNOWN", "UNKNOWN", "PENDING", "PENDING", "PENDING"]
    kept = mock.query("dashscope", theirs["output"]["task_id"], key="sk-other")
    assert kept.json()["output"]["task_status"] == "PENDING"


def test_a_full_mock_answers_the_providers_429(make_mock: Callable[..., Mock]) -> None:
    mock = make_mock(limits=Limits(max_tasks=2))
    for provider in ("dashscope", "anyfast"):
        body = T2V if provider == "dashscope" else {"model": "happyhorse-1.0-t2v", "prompt": "x"}
        mock.create(provider, body)
    full = mock.create("dashscope", T2V)
    assert full.status_code == 429 and full.json()["code"] == "Throttling.RateQuota"
    assert full.headers["retry-after"] == "60"
    journal = mock.client.get("/_paddock/requests?limit=1").json()["requests"][0]
    assert "--max-tasks" in journal["marks"]["fault"]
    assert len(mock.tasks()) == 2


def test_the_admin_task_list_is_paged(mock: Mock) -> None:
    made = [mock.create("dashscope", T2V).json()["output"]["task_id"] for _ in range(5)]
    page = mock.client.get("/_paddock/tasks?limit=2").json()
    assert [t["id"] for t in page["tasks"]] == made[::-1][:2]
    assert (page["total"], page["next_offset"]) == (5, 2)
    last = mock.client.get("/_paddock/tasks?limit=2&offset=4").json()
    assert [t["id"] for t in last["tasks"]] == [made[0]] and last["next_offset"] is None
    assert mock.client.get("/_paddock/tasks?limit=100000").status_code == 400


def test_admin_bodies_are_bounded(make_mock: Callable[..., Mock]) -> None:
    mock = make_mock(options=Options(admin_body_bytes=1024, max_file_bytes=2048))
    big = b'{"seconds": 1, "pad": "' + b"x" * 4096 + b'"}'
    answer = mock.client.post(
        "/_paddock/clock/advance", content=big, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    hosted = mock.client.post(
        "/_paddock/media", content=b"\x89PNG" + b"x" * 4096, headers={"Content-Type": "image/png"}
    )
    assert hosted.status_code == 413 and "--max-file-bytes" in hosted.json()["error"]


def _raw(server: LiveServer, request: bytes, wait: float = 5.0) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def _head(path: str, length: int, **extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in {**HEADERS["dashscope"], **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_create_whose_client_leaves_mid_body_makes_no_task(
    serve: Callable[..., LiveServer],
) -> None:
    server = serve()
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"model": "happyhorse-1.0-t2v", "input": {"prompt": "a horse"}}'
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(_head(CREATE_PATHS["dashscope"], len(body) + 100) + body)
        time.sleep(0.3)
    time.sleep(0.3)
    assert stored_tasks(server.state) == []
    whole = _raw(server, _head(CREATE_PATHS["dashscope"], len(body)) + body)
    assert whole.startswith(b"HTTP/1.1 200")
    assert len(stored_tasks(server.state)) == 1


def test_a_stalled_body_is_refused_in_the_envelope(serve: Callable[..., LiveServer]) -> None:
    server = serve(options=Options(body_timeout=0.3))
    answer = _raw(server, _head(CREATE_PATHS["dashscope"], 500) + b'{"model": "happy')
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"code":"RequestTimeout"' in answer
    assert stored_tasks(server.state) == []


def test_bodies_are_bounded_before_they_are_read(serve: Callable[..., LiveServer]) -> None:
    server = serve(options=Options(max_file_bytes=4096))
    # A declared size over the bound is refused before a byte of the body is read ...
    declared = _raw(
        server,
        b"POST /_storage/oss HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 10737418240\r\n\r\n--b\r\n",
    )
    assert declared.startswith(b"HTTP/1.1 400") and b"EntityTooLarge" in declared
    # ... and a streamed one as soon as it passes the bound, while the client is still sending.
    streamed = _raw(
        server,
        b"POST /_paddock/media HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: image/png\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"10000\r\n" + b"x" * 0x10000 + b"\r\n",
    )
    assert streamed.startswith(b"HTTP/1.1 413") and b"--max-file-bytes" in streamed
