"""Developer and CI entry points: ``nox`` runs tests, lint, typecheck; ``-s bench``, ``-s fuzz``.

Each session installs what it needs into its own virtualenv, so a clean
checkout needs only ``nox`` (the bench also wants wrk, npm, Java and Redis).
Virtualenvs are reused between runs because installing PyAV and Pillow
dominates a cold run.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The pytest suite; extra arguments go to pytest (``nox -s tests -- -k sdk``)."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff only: it needs neither the project nor its dependencies installed."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the packages listed in pyproject.toml, with the dev stubs."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """paddock under load next to its ceiling and its peers; not in the default run (~7 min).

    Phases: throughput (paddock, bare Starlette, Prism, WireMock and, when
    ``paddock serve`` has ``--store``, two workers on Redis; issue 11's
    ratios with PASS/BELOW), scale (100,000 tasks), soak (60 s of mixed
    traffic; ``-- --flat`` goes on to 3,000,000 requests for memory
    flatness, 10-15 min more), the async client and the conformance suites.
    See ``bench/load.py`` for every flag (``nox -s bench -- --help``).

    Needs wrk (installed with apt-get when running as root), npm for Prism
    and WireMock (installed once into .nox/peers/), Java 17+ for WireMock and
    redis-server for the shared-store row; a missing peer is skipped with a
    note. The driver itself uses only the standard library and paddock's own
    dependencies, so installing the project is enough.
    """
    session.install("-e", ".")
    session.run("python", "-m", "bench.load", *session.posargs)


@nox.session
def contracts(session: nox.Session) -> None:
    """The conformance suites against a target: ``nox -s contracts -- TARGET [check flags]``.

    TARGET is ``mock`` (in process, the default), a provider host root such as
    ``http://127.0.0.1:8000/dashscope`` (that provider only), or ``live``
    (keys from the environment; free checks only unless ``--budget N``).
    Every provider runs unless ``--provider`` is among the flags.
    """
    session.install("-e", ".")
    args = list(session.posargs)
    target = args.pop(0) if args and not args[0].startswith("-") else "mock"
    if "--provider" in args:
        session.run("paddock", "check", "--target", target, *args)
        return
    providers = ["dashscope", "apiyi", "anyfast"]
    if target.startswith("http"):
        providers = [p for p in providers if target.rstrip("/").endswith("/" + p)] or providers[:1]
    for provider in providers:
        session.run("paddock", "check", "--provider", provider, "--target", target, *args)


@nox.session
def drift(session: nox.Session) -> None:
    """The drift detection table, and example reports in reports/examples/ (~40 s).

    Serves the mock with each mutation of the catalogue in turn, records a
    conformance run against it and prints what the analysis found; then
    writes Markdown and HTML reports of one upstream with several changes.
    """
    session.install("-e", ".")
    session.run("python", "-m", "contracts.drift.examples")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Hostile input against a running ``paddock serve`` (at least 10,000 requests, ~4 min).

    schemathesis against each provider's exported OpenAPI document, plus raw
    requests from hypothesis over raw sockets: nesting 900-5,000 deep in every
    create field, huge strings, arrays and headers, invalid UTF-8, wrong and
    doubled content types, framing and path tricks, the admin API and the
    object storage. It proves no undocumented 5xx, no traceback in the server
    log, every error in its envelope, no hostile input accepted, the server
    still serving, and every task made before fuzzing answering identically
    after it; it prints its counts and exits non-zero on any violation.
    Arguments go to the driver (``nox -s fuzz -- --requests 20000 --seed 7``).
    """
    session.install("-e", ".[dev]")
    session.run("python", "-m", "bench.fuzz", *session.posargs)
