"""Counting what was sent and what broke, and printing it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ORACLES", "Failure", "Tally"]

ORACLES = (
    "undocumented 5xx",
    "not in the envelope",
    "oversized error answer",
    "traceback in the log",
    "no answer",
    "garbled answer",
    "accepted hostile input",
    "server stopped",
    "task changed",
    "schema check",
)


@dataclass
class Failure:
    """One kind of failure: where and how often it happened, and the first request showing it."""

    oracle: str
    kind: str
    example: str
    note: str
    places: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return sum(self.places.values())


@dataclass
class Tally:
    """Everything the run counts; ``failures`` keeps one entry per (oracle, where, kind)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    endings: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, str], Failure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def sent(self, source: str, provider: str | None, count: int = 1) -> None:
        self.requests[(source, provider or "other")] += count

    def fail(
        self, oracle: str, where: str, kind: str, example: str | Callable[[], str], note: str = ""
    ) -> None:
        """Count one failure; ``example`` (made only for a kind's first) reproduces it."""
        key = (oracle, kind)
        failure = self.failures.get(key)
        if failure is None:
            shown = example if isinstance(example, str) else example()
            failure = self.failures[key] = Failure(oracle, kind, shown, note)
        failure.places[where] += 1

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def violations(self) -> int:
        return sum(f.count for f in self.failures.values())

    def by_oracle(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for failure in self.failures.values():
            counts[failure.oracle] += failure.count
        return counts

    def lines(self, providers: list[str], elapsed: float, header: str) -> list[str]:
        """The printed report: counts first, then each kind of failure with its reproducer."""
        columns = [*providers, "other"]
        sources = sorted({source for source, _ in self.requests})
        width = max([len(s) for s in sources] + [6])
        out = [f"{header}: {self.total:,} requests in {elapsed:.1f} s", ""]
        out.append("requests by source and provider:")
        out.append(
            "  " + "source".ljust(width) + "".join(f"{c:>11}" for c in columns) + f"{'total':>9}"
        )
        for source in sources:
            row = [self.requests[(source, c)] for c in columns]
            out.append(
                "  " + source.ljust(width) + "".join(f"{n:>11,}" for n in row) + f"{sum(row):>9,}"
            )
        out.append("")
        statuses = sorted(self.statuses.items(), key=lambda kv: (not kv[0].isdigit(), kv[0]))
        out.append("answers by status: " + ", ".join(f"{s} x{n:,}" for s, n in statuses))
        out.append(
            "connections ended: "
            + ", ".join(f"{e} x{n:,}" for e, n in sorted(self.endings.items()))
        )
        counts = self.by_oracle()
        out.append("")
        out.append(f"violations: {self.violations:,}")
        for oracle in ORACLES:
            kinds = sum(1 for f in self.failures.values() if f.oracle == oracle)
            out.append(
                f"  {oracle:<24} {counts[oracle]:>6,}" + (f"  ({kinds} kinds)" if kinds else "")
            )
        out += [f"  {note}" for note in self.notes]
        ordered = sorted(self.failures.values(), key=lambda f: (ORACLES.index(f.oracle), -f.count))
        for number, failure in enumerate(ordered, 1):
            out.append("")
            places = ", ".join(f"{place} x{n}" for place, n in failure.places.most_common(6))
            more = len(failure.places) - 6
            out.append(f"[{number}] {failure.oracle}: {failure.kind}")
            out.append(
                f"    seen {failure.count}x: {places}"
                + (f" and {more} more places" if more > 0 else "")
            )
            if failure.note:
                out.append(f"    case: {failure.note}")
            out.append(f"    send: {failure.example}")
        return out
