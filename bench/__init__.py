"""Load benchmarks for the mock upstream; not shipped in the wheel, run with ``nox -s bench``.

The names here are the few every bench module shares: where traffic may go
(loopback only) and the one exception that means "this run failed, here is why".
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HOST", "ROOT", "BenchError"]

# Load goes to loopback only: every server the bench starts binds here.
HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """The run itself failed; its message is what a person needs to fix it."""
