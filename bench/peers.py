"""The peers paddock is measured against, installed and started by the bench itself.

* Prism (``@stoplight/prism-cli`` 5, from npm): ``prism mock`` on paddock's
  own exported DashScope OpenAPI document, default settings. Prism validates
  each request against the document, so it gets exactly the requests the
  document declares (the bench's are the documented example).
* WireMock (the ``wiremock`` npm package ships the standalone jar; Java 17+):
  default settings, two static stubs in a fresh ``--root-dir``: the create
  (POST, the documented PENDING answer) and the query (GET any task id, a
  SUCCEEDED answer), the same bodies the bare ceiling answers.
* Redis (``redis-server`` from the system) for paddock's shared store, on a
  free loopback port with persistence off.

Both npm packages go into a git-ignored cache (``.nox/peers/`` at the
repository root) on first use and are reused after. A missing ``npm``,
``java`` or ``redis-server`` is one line in :attr:`Peers.notes` and that peer
is skipped; the bench goes on without it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench import HOST, ROOT
from bench.bare_app import CREATED, SUCCEEDED, TASK_ID
from bench.servers import Fleet, Server, answers
from bench.traffic import CREATE_PATH, POLL_HEADERS, POLL_PREFIX

__all__ = ["PEER_DIR", "Peers", "install", "start_prism", "start_redis", "start_wiremock"]

PEER_DIR = ROOT / ".nox" / "peers"
PACKAGES = ("@stoplight/prism-cli@5", "wiremock@3")
JAVA_MIN = 17
INSTALL_TIMEOUT = 600.0


@dataclass
class Peers:
    """Where each installed peer is; ``None`` for one that cannot run here, with a note why."""

    prism: Path | None = None
    prism_version: str = "?"
    wiremock_jar: Path | None = None
    wiremock_version: str = "?"
    java: str | None = None
    redis: str | None = None
    notes: list[str] = field(default_factory=list)


def install(directory: Path = PEER_DIR) -> Peers:
    """Install Prism and WireMock into ``directory`` unless they are there; find java and redis."""
    peers = Peers()
    prism = directory / "node_modules" / ".bin" / "prism"
    jar_dir = directory / "node_modules" / "wiremock" / "build"
    if not prism.exists() or not list(jar_dir.glob("wiremock-standalone-*.jar")):
        _npm_install(directory, peers.notes)
    if prism.exists():
        peers.prism = prism
        meta = directory / "node_modules" / "@stoplight" / "prism-cli" / "package.json"
        peers.prism_version = _package_version(meta)
    jars = sorted(jar_dir.glob("wiremock-standalone-*.jar"))
    if jars:
        peers.wiremock_version = _package_version(directory / "node_modules/wiremock/package.json")
        java = shutil.which("java")
        version = _java_major(java) if java else None
        if java is None:
            peers.notes.append(
                f"WireMock skipped: java is not on PATH (install a Java {JAVA_MIN}+ runtime, "
                "e.g. apt-get install -y default-jre-headless)"
            )
        elif version is None or version < JAVA_MIN:
            peers.notes.append(f"WireMock skipped: {java} is Java {version}, it needs {JAVA_MIN}+")
        else:
            peers.wiremock_jar, peers.java = jars[-1], java
    peers.redis = shutil.which("redis-server")
    return peers


def _npm_install(directory: Path, notes: list[str]) -> None:
    npm = shutil.which("npm")
    if npm is None:
        notes.append("Prism and WireMock skipped: npm is not on PATH (install Node.js 18+ and npm)")
        return
    directory.mkdir(parents=True, exist_ok=True)
    print(f"bench: installing {' '.join(PACKAGES)} into {directory} (once) ...", flush=True)
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        notes.append(f"Prism and WireMock skipped: npm install took over {INSTALL_TIMEOUT:.0f} s")
        return
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        notes.append(f"Prism and WireMock skipped: npm install failed: {last[0]}")


def _package_version(package_json: Path) -> str:
    try:
        version = json.loads(package_json.read_text()).get("version")
    except (OSError, ValueError):
        return "?"
    return version if isinstance(version, str) else "?"


def _java_major(java: str) -> int | None:
    """The major version ``java -version`` reports (``openjdk version "17.0.15"`` is 17)."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older said "1.8.0_…".
    return int(match.group(2) or 0) if major == 1 else major


def start_prism(fleet: Fleet, peers: Peers) -> Server:
    """``prism mock`` on the DashScope document paddock exports, default settings."""
    assert peers.prism is not None
    from contracts.openapi import openapi_document
    from contracts.spec import load_specs

    spec = load_specs()["dashscope"]
    prism = peers.prism

    def argv(port: int) -> list[str]:
        document = fleet.workdir / "dashscope.openapi.json"
        server_url = f"http://{HOST}:{port}"
        document.write_text(json.dumps(openapi_document(spec, server_url=server_url)))
        return [str(prism), "mock", str(document), "--host", HOST, "--port", str(port)]

    return fleet.start("prism", argv, answers(POLL_PREFIX + TASK_ID, POLL_HEADERS))


def start_wiremock(fleet: Fleet, peers: Peers) -> Server:
    """WireMock standalone with default settings and the two static stubs."""
    assert peers.wiremock_jar is not None and peers.java is not None
    root = fleet.workdir / "wiremock"
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    (root / "__files").mkdir(exist_ok=True)
    stubs = {
        "create": ({"method": "POST", "urlPath": CREATE_PATH}, CREATED),
        "query": ({"method": "GET", "urlPathPattern": POLL_PREFIX + "[^/]+"}, SUCCEEDED),
    }
    for name, (match, body) in stubs.items():
        mapping = {
            "request": match,
            "response": {
                "status": 200,
                "headers": {"Content-Type": "application/json"},
                "jsonBody": body,
            },
        }
        (root / "mappings" / f"{name}.json").write_text(json.dumps(mapping, indent=2))
    jar, java = peers.wiremock_jar, peers.java

    def argv(port: int) -> list[str]:
        # --bind-address keeps it on loopback; it is not a performance setting.
        flags = ["--port", str(port), "--bind-address", HOST, "--root-dir", str(root)]
        return [java, "-jar", str(jar), *flags]

    return fleet.start("wiremock", argv, answers(POLL_PREFIX + TASK_ID, POLL_HEADERS))


def start_redis(fleet: Fleet, peers: Peers) -> Server:
    """``redis-server`` on a free loopback port, nothing written to disk."""
    assert peers.redis is not None
    redis = peers.redis

    def argv(port: int) -> list[str]:
        return [
            redis,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    return fleet.start("redis", argv, _pongs, timeout=30)


def _pongs(server: Server) -> bool:
    """Redis answers PING (an inline command) with +PONG once it accepts clients."""
    try:
        with socket.create_connection((HOST, server.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
