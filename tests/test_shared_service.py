"""paddock serve as a shared service: several workers and hosts on one Redis, and restarts.

Each test runs ``paddock serve`` as a user would, against a real redis-server,
and talks to it over loopback sockets.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import AUTH, CREATE_PATHS, HEADERS, QUERY_PATHS, ServeProcess

pytestmark = pytest.mark.e2e

T2V = {"model": "happyhorse-1.0-t2v", "input": {"prompt": "a horse"}, "parameters": {}}


def fresh(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request on its own connection, so the kernel may hand it to any worker."""
    with httpx.Client(timeout=10) as client:
        return client.request(
            method, url, headers={"Connection": "close"} | kwargs.pop("headers", {}), **kwargs
        )


def create(served: ServeProcess, provider: str = "dashscope", body: Any = T2V) -> str:
    answer = fresh(
        "POST", served.url + CREATE_PATHS[provider], json=body, headers=HEADERS[provider]
    )
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["output"]["task_id"]
    return task_id


def query(served: ServeProcess, task_id: str) -> httpx.Response:
    return fresh("GET", served.url + QUERY_PATHS["dashscope"].format(task_id), headers=AUTH)


def journal(served: ServeProcess) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = fresh(
        "GET", served.url + "/_paddock/requests?limit=100000"
    ).json()["requests"]
    return entries


def test_two_workers_answer_for_each_others_tasks(
    paddock_serve: Callable[..., ServeProcess], redis_url: str
) -> None:
    served = paddock_serve("--workers", "2", "--store", redis_url, "--timing", "instant")
    tasks = [create(served) for _ in range(12)]
    crossed: list[dict[str, Any]] = []
    # The kernel hands each new connection to either worker; a few rounds see both.
    for _ in range(20):
        for task_id in tasks:
            answer = query(served, task_id)
            assert answer.status_code == 200
            assert answer.json()["output"]["task_status"] == "SUCCEEDED"
        entries = journal(served)
        made_by = {e["task_id"]: e["worker"] for e in entries if e["operation"] == "create"}
        crossed = [
            e
            for e in entries
            if e["operation"] == "query"
            and e["status"] == 200
            and made_by.get(e["task_id"]) not in (None, e["worker"])
        ]
        if crossed:
            break
    assert crossed, "some task created by one worker should have been polled through the other"


def test_two_hosts_on_one_redis_behave_as_one_mock(
    paddock_serve: Callable[..., ServeProcess], redis_url: str
) -> None:
    one = paddock_serve("--store", redis_url, "--timing", "realistic")
    two = paddock_serve("--store", redis_url, "--timing", "realistic")
    task_id = create(one)
    assert query(two, task_id).json()["output"]["task_status"] == "PENDING"
    # The clock moved on one host is the clock of the other.
    fresh("POST", two.url + "/_paddock/clock/advance", json={"seconds": 3600})
    finished = query(one, task_id).json()["output"]
    assert finished["task_status"] == "SUCCEEDED"
    # The signed link one host hands out downloads from the other.
    link = finished["video_url"].replace(one.url, two.url)
    video = fresh("GET", link)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    # A cancel on one host is seen by the other, and a reset on either empties both.
    pending = create(two)
    cancel = fresh("POST", one.url + f"/dashscope/api/v1/tasks/{pending}/cancel", headers=AUTH)
    assert cancel.status_code == 200
    assert query(two, pending).json()["output"]["task_status"] == "CANCELED"
    fresh("POST", one.url + "/_paddock/reset")
    assert query(two, task_id).json()["output"]["task_status"] == "UNKNOWN"


def expected_state(task: dict[str, Any], now: float) -> str:
    """A task's state at ``now`` from its plan, worked out here rather than by the server."""
    age = now - task["created_at"]
    plan = task["plan"]
    if age < plan["pending"]:
        return "PENDING"
    if age < plan["pending"] + plan["running"]:
        return "RUNNING"
    return str(plan["outcome"])


def test_a_restart_finds_every_task_where_the_clock_says(
    paddock_serve: Callable[..., ServeProcess], redis_url: str
) -> None:
    args = ("--store", redis_url, "--timing", "realistic")
    first = paddock_serve(*args)
    tasks = [create(first) for _ in range(6)]
    tasks.append(
        create(first, body={**T2V, "input": {"prompt": "x #paddock:fail=InvalidParameter"}})
    )
    # One task a hundred times quicker than the spec's timing: surely done before the restart.
    done = create(first, body={**T2V, "input": {"prompt": "x #paddock:slow=0.01"}})
    tasks.append(done)
    canceled = tasks[0]
    fresh("POST", first.url + f"/dashscope/api/v1/tasks/{canceled}/cancel", headers=AUTH)
    fresh("POST", first.url + "/_paddock/clock/advance", json={"seconds": 95})
    before = {t["id"]: t for t in fresh("GET", first.url + "/_paddock/tasks").json()["tasks"]}
    assert before[done]["state"] == "SUCCEEDED"
    link = query(first, done).json()["output"]["video_url"]
    seen_before = len(journal(first))
    first.stop()

    second = paddock_serve(*args, port=first.port)
    for task_id in tasks:
        now_before = fresh("GET", second.url + "/_paddock/health").json()["now"]
        state = query(second, task_id).json()["output"]["task_status"]
        now_after = fresh("GET", second.url + "/_paddock/health").json()["now"]
        if task_id == canceled:
            assert state == "CANCELED"
            continue
        assert state in {
            expected_state(before[task_id], now_before),
            expected_state(before[task_id], now_after),
        }, task_id
    assert query(second, tasks[-2]).json()["output"].get("code") in (None, "InvalidParameter")
    # Links signed before the restart still download, and the journal kept its entries.
    assert fresh("GET", link).status_code == 200
    assert len(journal(second)) > seen_before


def test_workers_without_a_shared_store_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "paddock.cli", "serve", "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--store" in done.stderr
