"""pytest plugin: the conformance checks as test items, one per check and model.

Enable it with ``-p contracts.pytest_plugin`` (or ``pytest_plugins = ["contracts.pytest_plugin"]``
in a conftest) and name a provider::

    pytest -p contracts.pytest_plugin --paddock-provider dashscope --paddock-target mock

Each provider's checks run once, on the first of its items; every item then
reports its own outcome, so a CI page shows which check broke for which model,
with the failure's words and its ``curl`` line.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts.conformance import CHECK_NAMES, Report, TargetError, run_checks
from contracts.spec import load_specs

_REPORTS: dict[str, Report] = {}
_PER_PROVIDER = ("auth", "unknown-id", "schema")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("paddock", "paddock conformance checks")
    group.addoption("--paddock-provider", action="append", default=[], help="provider to check")
    group.addoption("--paddock-target", default="mock", help="mock, a provider host root, or live")
    group.addoption("--paddock-examples", type=int, default=20, help="examples per check and model")
    group.addoption("--paddock-budget", type=int, default=None, help="billable tasks allowed")


class CheckItem(pytest.Item):
    """One check for one model (or for the provider), read from the provider's run."""

    def __init__(self, *, provider: str, check: str, model: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider, self.check, self.model = provider, check, model

    def runtest(self) -> None:
        report = _REPORTS.get(self.provider)
        if report is None:
            options = self.config.option
            try:
                report = run_checks(
                    self.provider,
                    target=options.paddock_target,
                    examples=options.paddock_examples,
                    budget=options.paddock_budget,
                )
            except TargetError as exc:
                raise pytest.UsageError(str(exc)) from None
            _REPORTS[self.provider] = report
        for outcome in report.outcomes:
            if outcome.check == self.check and outcome.model == self.model:
                if outcome.failures:
                    lines = [f"{f.message}\n  reproduce: {f.curl}" for f in outcome.failures]
                    raise AssertionError("\n".join(lines))
                if outcome.status == "skip":
                    pytest.skip(outcome.skipped or "skipped")
                return
        pytest.skip("not run for this target")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return f"paddock:{self.provider}", None, f"{self.check}[{self.model or '*'}]"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    providers = config.getoption("paddock_provider")
    if not providers:
        return
    specs = load_specs()
    for provider in providers:
        spec = specs[provider]
        for check in CHECK_NAMES:
            models: list[str | None] = [None] if check in _PER_PROVIDER else list(spec.models)
            for model in models:
                items.append(
                    CheckItem.from_parent(
                        session,
                        name=f"{provider}::{check}[{model or '*'}]",
                        provider=provider,
                        check=check,
                        model=model,
                    )
                )
