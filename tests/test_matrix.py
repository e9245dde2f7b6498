"""``paddock matrix``: the committed report is current, and it follows the specs, not code."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.drift.matrix import Table, matrix_files, matrix_tables
from contracts.spec import builtin_specs_dir, load_specs
from paddock.cli import main

REPORTS = Path(__file__).resolve().parent.parent / "reports"


def edited_specs(tmp_path: Path, file: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the built-in specs with one YAML document changed by ``edit``."""
    folder = tmp_path / "specs"
    shutil.copytree(builtin_specs_dir(), folder)
    doc = yaml.safe_load((folder / file).read_text(encoding="utf-8"))
    edit(doc)
    (folder / file).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return folder


def table_for(folder: Path | None, model: str) -> Table:
    shared, _ = matrix_tables(load_specs(folder))
    return next(table for table in shared if table.model == model)


def html_cells(page: str, model: str, label: str) -> list[ET.Element]:
    """The ``<td>`` cells of one row of one model's table (the page is well-formed XML)."""
    root = ET.fromstring(page.split("\n", 1)[1])  # past <!DOCTYPE html>
    heading = next(h for h in root.iter("h3") if h.get("id") == f"model-{model}")
    elements = list(root.iter())
    table = next(e for e in elements[elements.index(heading) :] if e.tag == "table")
    row = next(r for r in table.iter("tr") if r.findtext("th") == label)
    return row.findall("td")


@pytest.mark.parametrize("name", ["provider-matrix.md", "provider-matrix.html"])
def test_committed_report_is_current(name: str) -> None:
    committed = REPORTS / name
    fresh = matrix_files(load_specs())[name]
    assert committed.is_file(), f"{committed} is missing; run `paddock matrix` and commit it"
    assert committed.read_text(encoding="utf-8") == fresh, (
        f"{committed} is out of date with the specs; run `paddock matrix` and commit the result"
    )


def test_output_is_deterministic_and_self_contained(tmp_path: Path) -> None:
    first = matrix_files(load_specs())
    # The same specs from elsewhere on disk: no path, time or ordering accident leaks in.
    shutil.copytree(builtin_specs_dir(), tmp_path / "copy")
    assert matrix_files(load_specs(tmp_path / "copy")) == first
    page = first["provider-matrix.html"]
    assert "<style>" in page
    assert not any(asset in page for asset in ("<link", "<script", "src=", "url("))
    ET.fromstring(page.split("\n", 1)[1])  # well-formed, so a browser has nothing to guess
    for spec in load_specs():
        assert spec.digest in page and spec.digest in first["provider-matrix.md"]


def test_every_model_shared_by_two_providers_has_a_table() -> None:
    shared, single = matrix_tables(load_specs())
    assert {t.model: t.providers for t in shared}["happyhorse-1.0-t2v"] == ("anyfast", "dashscope")
    assert {t.model for t in shared} == {
        "happyhorse-1.0-i2v",
        "happyhorse-1.0-r2v",
        "happyhorse-1.0-t2v",
        "wan2.7-i2v",
    }
    assert single == []
    i2v = table_for(None, "happyhorse-1.0-i2v")
    duration = i2v.row("Parameters", "duration")
    assert [c.text for c in duration.cells] == [
        "integer, 3 to 15\ndefault 5",
        "integer, 2 to 15\ndefault 5",
        "integer, 3 to 15\ndefault 5",
    ]
    assert duration.differs and duration.cells[1].source == "seed 000"
    assert not i2v.row("Results", "fps").differs
    assert i2v.row("Errors", "auth missing").cells[0].text.startswith("401 invalid_api_key")


def test_a_parameter_range_edit_changes_its_cell_and_marks_it(tmp_path: Path) -> None:
    label = ("Parameters", "duration")
    assert not table_for(None, "happyhorse-1.0-t2v").row(*label).differs

    def shorten(doc: dict[str, Any]) -> None:
        doc["models"]["happyhorse-1.0-t2v"]["parameters"]["duration"]["max"] = 12

    folder = edited_specs(tmp_path, "anyfast.yaml", shorten)
    row = table_for(folder, "happyhorse-1.0-t2v").row(*label)
    assert row.differs
    assert [c.text for c in row.cells] == [
        "integer, 3 to 12\ndefault 5",
        "integer, 3 to 15\ndefault 5",
    ]
    files = matrix_files(load_specs(folder))
    assert "| duration | **integer, 3 to 12**<br>**default 5** <sup>" in files["provider-matrix.md"]
    cells = html_cells(files["provider-matrix.html"], "happyhorse-1.0-t2v", "duration")
    assert [c.get("class") for c in cells] == ["differs", "differs"]
    assert "".join(cells[0].itertext()).startswith("integer, 3 to 12")


def test_a_status_word_edit_changes_its_cell_and_marks_it(tmp_path: Path) -> None:
    label = ("Status vocabulary", "CANCELED")
    assert not table_for(None, "happyhorse-1.0-t2v").row(*label).differs

    def rename(doc: dict[str, Any]) -> None:
        doc["states"]["vocabularies"]["status"]["CANCELED"] = "CANCELLED"

    folder = edited_specs(tmp_path, "anyfast.yaml", rename)
    row = table_for(folder, "happyhorse-1.0-t2v").row(*label)
    assert row.differs and [c.text for c in row.cells] == ["CANCELLED", "CANCELED"]
    page = matrix_files(load_specs(folder))["provider-matrix.html"]
    cells = html_cells(page, "happyhorse-1.0-t2v", "CANCELED")
    assert [c.get("class") for c in cells] == ["differs", "differs"]
    # The other tables compare other providers: the unchanged ones stay unmarked.
    assert not html_cells(page, "wan2.7-i2v", "UNKNOWN")[0].get("class")


def test_a_new_provider_file_is_a_new_column(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    shutil.copytree(builtin_specs_dir(), folder)
    text = (folder / "anyfast.yaml").read_text(encoding="utf-8")
    assert "\nprovider: anyfast\n" in text
    (folder / "otherfast.yaml").write_text(
        text.replace("\nprovider: anyfast\n", "\nprovider: otherfast\n")
    )

    table = table_for(folder, "happyhorse-1.0-i2v")
    assert table.providers == ("anyfast", "apiyi", "dashscope", "otherfast")
    poll = table.row("Lifecycle", "poll interval")
    assert poll.cells[3] == poll.cells[0]
    files = matrix_files(load_specs(folder))
    assert "|  | anyfast | apiyi | dashscope | otherfast |" in files["provider-matrix.md"]
    assert '<th scope="col">otherfast</th>' in files["provider-matrix.html"]
    assert "otherfast.yaml" in files["provider-matrix.md"]


def test_a_model_only_one_provider_offers_gets_the_short_table(tmp_path: Path) -> None:
    def add(doc: dict[str, Any]) -> None:
        doc["models"]["happyhorse-1.1-t2v"] = doc["models"]["happyhorse-1.0-t2v"]

    folder = edited_specs(tmp_path, "anyfast.yaml", add)
    _, single = matrix_tables(load_specs(folder))
    assert [(t.model, t.providers) for t in single] == [("happyhorse-1.1-t2v", ("anyfast",))]
    assert [s.title for s in single[0].sections] == ["Prompt", "Parameters"]
    assert (
        "### happyhorse-1.1-t2v (anyfast only)"
        in matrix_files(load_specs(folder))["provider-matrix.md"]
    )


def test_markdown_cells_escape_pipes(tmp_path: Path) -> None:
    def pipe(doc: dict[str, Any]) -> None:
        doc["title"] = "AnyFast | gateway"
        doc["models"]["happyhorse-1.0-t2v"]["task_id"] = "t2v|{uuid}"

    folder = edited_specs(tmp_path, "anyfast.yaml", pipe)
    text = matrix_files(load_specs(folder))["provider-matrix.md"]
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if "\\|" in line}
    # A pipe in a value must not split its row into more columns.
    assert set(rows) == {"| anyfast", "| task id form"}
    assert columns(rows["| anyfast"]) == 5
    assert columns(rows["| task id form"]) == 3  # label, anyfast, dashscope


def columns(line: str) -> int:
    return line.replace("\\|", "").count("|") - 1


def test_check_fails_on_a_missing_or_stale_copy_and_passes_after_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports"
    assert main(["matrix", "--out-dir", str(out), "--check"]) == 1
    assert "run 'paddock matrix'" in capsys.readouterr().err
    assert main(["matrix", "--out-dir", str(out)]) == 0
    assert main(["matrix", "--out-dir", str(out), "--check"]) == 0
    stale = out / "provider-matrix.html"
    stale.write_text(stale.read_text(encoding="utf-8").replace("dashscope", "dashscopf"))
    assert main(["matrix", "--out-dir", str(out), "--check"]) == 1
    assert "provider-matrix.html" in capsys.readouterr().err
