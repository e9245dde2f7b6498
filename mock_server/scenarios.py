"""Fault injection: choose a task's fate per request.

A scenario comes from the ``X-Paddock-Scenario`` header, or, for clients that
cannot add headers (the official SDK), from ``#paddock:ITEM`` markers in the
prompt. Items, separated by ``;`` in the header:

``fail=CODE``       the task ends FAILED with the catalogue's CODE and message
``reject=CODE``     the create call itself answers with catalogue error CODE
``stuck[=STATE]``   the task never leaves RUNNING (or PENDING)
``throttle``        the create call answers the provider's 429
``flaky``           the task's first query answers the provider's 5xx once
``slow=FACTOR``     queueing and running take FACTOR times longer
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from contracts.spec import Spec
from contracts.task import Plan

__all__ = ["HEADER", "Scenario", "ScenarioError", "parse_scenario"]

HEADER = "x-paddock-scenario"
_MARKER = re.compile(r"#paddock:([A-Za-z0-9_.=-]+)")
_ITEMS = "fail=CODE, reject=CODE, stuck[=running|pending], throttle, flaky, slow=FACTOR"


class ScenarioError(ValueError):
    """A scenario item is malformed; the message says which and lists the valid ones."""


@dataclass(frozen=True, slots=True)
class Scenario:
    fail: str | None = None
    reject: str | None = None
    stuck: str | None = None
    throttle: bool = False
    flaky: bool = False
    slow: float = 1.0

    @property
    def empty(self) -> bool:
        return self == _EMPTY

    def describe(self) -> dict[str, object]:
        """The items that differ from a plain task, for the request journal."""
        return {
            name: getattr(self, name)
            for name in ("fail", "reject", "stuck", "throttle", "flaky", "slow")
            if getattr(self, name) != getattr(_EMPTY, name)
        }

    def apply(self, plan: Plan, spec: Spec) -> Plan:
        """The plan this scenario turns ``plan`` into."""
        if self.slow != 1.0:
            plan = replace(plan, pending=plan.pending * self.slow, running=plan.running * self.slow)
        if self.stuck == "PENDING":
            plan = replace(plan, pending=math.inf)
        elif self.stuck == "RUNNING":
            plan = replace(plan, running=math.inf)
        if self.fail is not None:
            error = spec.error(self.fail)
            plan = replace(
                plan, outcome="FAILED", error_code=error.key, error_message=error.message
            )
        return plan


_EMPTY = Scenario()


def parse_scenario(spec: Spec, header: str | None, prompt: str | None) -> Scenario:
    """Read the header and the prompt markers; raise ScenarioError on anything unknown."""
    items: list[str] = []
    if header:
        items.extend(part.strip() for part in header.split(";") if part.strip())
    if prompt and "#paddock:" in prompt:
        items.extend(_MARKER.findall(prompt))
    if not items:
        return _EMPTY
    if len(items) > 16:
        raise ScenarioError(f"a scenario takes at most 16 items, got {len(items)}")
    values: dict[str, object] = {}
    for item in items:
        # An item is quoted back in the error; never at its own length.
        shown = item if len(item) <= 80 else item[:79] + "…"
        name, _, arg = item.partition("=")
        name = name.strip().lower()
        arg = arg.strip()
        if name in ("fail", "reject"):
            if not arg:
                raise ScenarioError(
                    f"scenario item {shown!r} needs a code, e.g. {name}=InvalidParameter"
                )
            if not spec.has_error(arg):
                known = ", ".join(sorted(spec.errors))
                raise ScenarioError(
                    f"scenario {shown!r}: {spec.provider} has no error {arg[:80]!r}; known: {known}"
                )
            values[name] = spec.error(arg).key
        elif name == "stuck":
            state = (arg or "running").upper()
            if state not in ("RUNNING", "PENDING"):
                raise ScenarioError(f"scenario {shown!r}: stuck takes running or pending")
            values["stuck"] = state
        elif name in ("throttle", "flaky"):
            values[name] = True
        elif name == "slow":
            try:
                factor = float(arg)
            except ValueError:
                factor = -1.0
            if not factor > 0 or not math.isfinite(factor):
                raise ScenarioError(
                    f"scenario {shown!r}: slow takes a positive factor, e.g. slow=3"
                )
            values["slow"] = factor
        else:
            raise ScenarioError(f"unknown scenario item {shown!r}; known: {_ITEMS}")
    return Scenario(**values)  # type: ignore[arg-type]
