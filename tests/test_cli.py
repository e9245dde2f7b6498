"""``paddock serve`` as a person runs it, and one line for every mistake."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e


def paddock(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paddock", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_serve_prints_every_base_url_and_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paddock",
            "serve",
            "--port",
            str(port),
            "--provider",
            "dashscope",
            "--timing",
            "instant",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        banner = "".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"DASHSCOPE_HTTP_BASE_URL={base}/dashscope/api/v1" in banner
        assert f"{base}/apiyi" in banner and f"{base}/anyfast" in banner
        assert f"DASHSCOPE_HTTP_BASE_URL={base}/api/v1" in banner  # --provider serves at the root
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/_paddock/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "paddock serve did not answer"
            time.sleep(0.1)
        created = httpx.post(
            f"{base}/api/v1/services/aigc/video-generation/video-synthesis",
            headers={"Authorization": "Bearer k", "X-DashScope-Async": "enable"},
            json={"model": "happyhorse-1.0-t2v", "input": {"prompt": "tide"}},
        )
        assert created.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--speed", "fast"], "--speed takes a positive number"),
        (["serve", "--port", "99999"], "--port takes 0 to 65535"),
        (["serve", "--timing", "slow"], "invalid choice: 'slow'"),
        (
            ["serve", "--provider", "openai"],
            "--provider 'openai' is not one of anyfast, apiyi, dashscope",
        ),
        (["serve", "--specs", "/no/such/dir"], "is not a directory of spec files"),
        (["serve", "--colour"], "unrecognized arguments: --colour"),
        (["serve", "--store", "http://127.0.0.1:6379"], "--store takes redis://HOST:PORT/DB"),
        (["serve", "--workers", "2"], "--workers needs a shared --store"),
        (["serve", "--max-tasks", "0"], "expected a whole number above 0"),
        (["serve", "--journal-bytes", "lots"], "expected a size above 0 such as 65536"),
        (["serve", "--head-timeout", "-1"], "expected a number of seconds above 0"),
        (["check", "--provider", "dashscope", "--record", "/etc/passwd"], "is a file"),
        (["check", "--provider", "dashscope", "--record", "/proc/nope"], "cannot create"),
        (["drift", "run", "--provider", "dashscope", "--reports", "/etc/passwd"], "is a file"),
        (["launch"], "invalid choice: 'launch'"),
    ],
)
def test_mistakes_get_one_line_and_status_2(args: list[str], says: str) -> None:
    result = paddock(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("paddock: ") and says in lines[0]


def test_broken_spec_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dashscope.yaml").write_text("provider: dashscope\nspec_version: 2\n")
    result = paddock("serve", "--specs", str(tmp_path))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "broken spec" in line and "dashscope.yaml" in line


def test_an_unreachable_store_is_one_line() -> None:
    result = paddock("serve", "--port", "0", "--store", f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], result.stderr


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = paddock("serve", "--port", str(port))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line
