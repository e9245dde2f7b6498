"""``nox -s drift``: the detection table, and example reports from a mutated upstream.

Prints the mutation catalogue's detection table (every mutation found with
its kind and severity, nothing else, and the unedited mock clean), then
serves one upstream with several changes at once, records a run against it
and writes the Markdown and HTML reports to ``reports/examples/``. Those
files are generated here and never edited by hand.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from contracts.drift.mutations import CATALOGUE, SpecMutation, detect, detection_table
from contracts.drift.report import render

__all__ = ["EXAMPLE", "main"]

# Changes that leave valid requests accepted, so the run still times enough tasks to
# show the doubled latencies (a refused create ends its check early).
_PICKS = ("field-retyped", "default-duration", "field-added", "error-message-changed",
          "timing-doubled")  # fmt: skip


def _combined() -> SpecMutation:
    chosen = [m for m in CATALOGUE if m.name in _PICKS]

    def edit(doc: dict[str, Any]) -> None:
        for mutation in chosen:
            mutation.edit(doc)

    return SpecMutation(
        "example",
        "dashscope",
        "happyhorse-1.0-t2v",
        frozenset(pair for m in chosen for pair in m.expect),
        edit,
        "; ".join(m.what for m in chosen),
    )


EXAMPLE = _combined()


def main(out: Path = Path("reports") / "examples") -> int:
    table, ok = detection_table()
    print(table)
    with tempfile.TemporaryDirectory(prefix="paddock-drift-example-") as tmp:
        analysis = detect(EXAMPLE, examples=40, workdir=Path(tmp))
    analysis.run = "(a temporary run against the mutated mock)"
    missing = EXAMPLE.expect - {(f.kind, f.severity) for f in analysis.findings}
    if missing:
        print(f"the example upstream's changes were not all found: {sorted(missing)}")
        ok = False
    out.mkdir(parents=True, exist_ok=True)
    for fmt, suffix in (("markdown", "md"), ("html", "html")):
        path = out / f"drift-{EXAMPLE.provider}.{suffix}"
        path.write_text(render(analysis, fmt), encoding="utf-8")
        print(f"wrote {path}")
    print(f"example upstream: {EXAMPLE.what}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
