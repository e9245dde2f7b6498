"""Specs load, keep the providers' documented differences, and fail loudly when broken."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.spec import SpecError, SpecSet, builtin_specs_dir, load_spec, load_specs
from tests.conftest import Mock


def copy_specs(tmp_path: Path) -> Path:
    target = tmp_path / "specs"
    shutil.copytree(builtin_specs_dir(), target)
    return target


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_builtin_specs_cover_the_required_models(specs: SpecSet) -> None:
    assert specs.names() == ["anyfast", "apiyi", "dashscope"]
    assert set(specs["dashscope"].models) >= {
        "happyhorse-1.0-i2v",
        "happyhorse-1.0-t2v",
        "happyhorse-1.0-r2v",
        "wan2.7-i2v",
    }
    assert set(specs["apiyi"].models) == {"happyhorse-1.0-i2v", "happyhorse-1.0-r2v", "wan2.7-i2v"}
    assert set(specs["anyfast"].models) == {
        "happyhorse-1.0-i2v",
        "happyhorse-1.0-r2v",
        "happyhorse-1.0-t2v",
    }
    assert set(specs["dashscope"].operations) == {
        "create",
        "query",
        "cancel",
        "list",
        "upload_policy",
    }
    assert set(specs["apiyi"].operations) == {"create", "query"}


def test_documented_differences_survive_extends(specs: SpecSet) -> None:
    ds, ay, af = specs["dashscope"].models, specs["apiyi"].models, specs["anyfast"].models
    duration = [m["happyhorse-1.0-i2v"].parameters["duration"] for m in (ds, ay, af)]
    assert [(d.minimum, d.maximum) for d in duration] == [(3, 15), (2, 15), (3, 15)]
    resolution = [m["happyhorse-1.0-i2v"].parameters["resolution"].default for m in (ds, ay, af)]
    assert resolution == ["1080P", "720P", "1080P"]
    watermark = [m["happyhorse-1.0-i2v"].parameters["watermark"].default for m in (ds, ay, af)]
    assert watermark == [True, False, True]
    assert not ds["happyhorse-1.0-i2v"].parameters["ratio"].supported
    assert af["happyhorse-1.0-i2v"].parameters["ratio"].supported
    assert [m["happyhorse-1.0-i2v"].prompt.required for m in (ds, ay, af)] == [False, True, True]
    assert ay["happyhorse-1.0-r2v"].media["reference_image"].max == 9
    assert af["happyhorse-1.0-r2v"].media["reference_image"].max == 3
    assert (
        "driving_audio" in ay["wan2.7-i2v"].media
        and "driving_audio" not in ay["happyhorse-1.0-i2v"].media
    )
    # APIYI keeps DashScope's image rules through `extends`.
    image = ay["happyhorse-1.0-i2v"].media["first_frame"]
    assert (image.min_side, image.aspect_min, image.aspect_max, image.max_bytes) == (
        300,
        0.4,
        2.5,
        10 * 1024 * 1024,
    )
    assert image.formats == {"jpeg", "jpg", "png", "bmp", "webp"}


def test_every_rule_names_its_source(specs: SpecSet) -> None:
    for spec in specs:
        for model in spec.models.values():
            assert model.source and model.prompt.source
            for rule in [*model.media.values(), *model.parameters.values()]:
                assert rule.source, (spec.provider, model.name, rule)
        for error in spec.errors.values():
            assert error.source
        for violation in spec.violations.values():
            assert violation.source


def test_a_new_model_is_a_yaml_change(tmp_path: Path, make_mock: Callable[..., Mock]) -> None:
    directory = copy_specs(tmp_path)

    def add_model(doc: dict[str, Any]) -> None:
        model = dict(doc["models"]["happyhorse-1.0-t2v"])
        model["parameters"] = {
            **model["parameters"],
            "duration": {"type": "integer", "min": 4, "max": 20, "default": 6, "source": "test"},
        }
        model["attributes"] = {"action": "generate"}
        model["source"] = "test"
        doc["models"]["happyhorse-1.1-t2v"] = model

    edit(directory / "anyfast.yaml", add_model)
    mock = make_mock(specs=load_specs(directory))
    created = mock.create(
        "anyfast", {"model": "happyhorse-1.1-t2v", "prompt": "tide", "duration": 20}
    )
    assert created.status_code == 200, created.text
    task = mock.task(created.json()["id"])
    assert task is not None and task.output.duration == 20
    refused = mock.create(
        "anyfast", {"model": "happyhorse-1.1-t2v", "prompt": "tide", "duration": 21}
    )
    assert refused.status_code == 400 and "between 4 and 20" in refused.json()["message"]


def test_a_new_provider_is_a_yaml_change(tmp_path: Path, make_mock: Callable[..., Mock]) -> None:
    directory = copy_specs(tmp_path)
    (directory / "mirror.yaml").write_text(
        """
spec_version: 1
provider: mirror
extends: dashscope
title: A DashScope mirror
hosts:
  default: main
  regions: {main: {url: "https://mirror.example.com"}, singapore: null, beijing: null}
client: {api_key_env: MIRROR_API_KEY}
operations:
  create: {path: /v2/generate, source: test}
  query: {path: "/v2/jobs/{task_id}", source: test}
"""
    )
    mock = make_mock(specs=load_specs(directory))
    headers = {"Authorization": "Bearer k", "X-DashScope-Async": "enable"}
    body = {"model": "happyhorse-1.0-t2v", "input": {"prompt": "tide"}}
    created = mock.client.post("/mirror/v2/generate", json=body, headers=headers)
    assert created.status_code == 200, created.text
    task_id = created.json()["output"]["task_id"]
    status = mock.client.get(f"/mirror/v2/jobs/{task_id}", headers=headers).json()["output"][
        "task_status"
    ]
    assert status == "PENDING"


@pytest.mark.parametrize(
    ("file", "change", "path", "problem"),
    [
        (
            "dashscope.yaml",
            lambda d: d["models"]["happyhorse-1.0-i2v"]["parameters"]["duration"].update(
                min="three"
            ),
            "models.happyhorse-1.0-i2v.parameters.duration",
            "'three'",
        ),
        (
            "dashscope.yaml",
            lambda d: d["violations"]["param_range"].update(error="NoSuchError"),
            "violations.param_range.error",
            "unknown error 'NoSuchError'",
        ),
        (
            "anyfast.yaml",
            lambda d: d["responses"]["query"]["states"]["PENDING"]["data"].update(
                progress="{progress|fraction}"
            ),
            "responses.query.states.PENDING",
            "unknown filter 'fraction'",
        ),
        (
            "anyfast.yaml",
            lambda d: d["models"]["happyhorse-1.0-i2v"]["media"]["first_frame"].update(
                uses="picture"
            ),
            "models.happyhorse-1.0-i2v.media.first_frame.uses",
            "unknown media kind 'picture'",
        ),
        (
            "anyfast.yaml",
            lambda d: d["models"]["happyhorse-1.0-i2v"]["parameters"]["duration"].update(
                default=99
            ),
            "models.happyhorse-1.0-i2v.parameters.duration.default",
            "outside 3..15",
        ),
        ("apiyi.yaml", lambda d: d.update(extends="nosuchprovider"), "extends", "unknown provider"),
        (
            "dashscope.yaml",
            lambda d: d["states"]["vocabularies"]["status"].pop("CANCELED"),
            "states.vocabularies.status",
            "CANCELED",
        ),
        ("dashscope.yaml", lambda d: d.update(colour="blue"), "", "colour"),
    ],
    ids=[
        "wrong type",
        "unknown error",
        "unknown filter",
        "unknown media kind",
        "default out of range",
        "unknown parent",
        "vocabulary gap",
        "unknown key",
    ],
)
def test_a_broken_spec_names_file_path_and_problem(
    tmp_path: Path, file: str, change: Callable[[dict[str, Any]], None], path: str, problem: str
) -> None:
    directory = copy_specs(tmp_path)
    edit(directory / file, change)
    with pytest.raises(SpecError) as caught:
        load_specs(directory)
    error = caught.value
    assert Path(error.file.split(" ")[0]).name in (file, "dashscope.yaml", "apiyi.yaml")
    assert error.path.startswith(path), str(error)
    assert problem in str(error)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    directory = copy_specs(tmp_path)
    (directory / "anyfast.yaml").write_text("provider: anyfast\nmodels: [unclosed\n")
    with pytest.raises(SpecError, match=r"anyfast.yaml: at line \d+"):
        load_specs(directory)


def test_load_one_spec_file_resolves_extends_from_builtins(tmp_path: Path) -> None:
    own = tmp_path / "apiyi.yaml"
    shutil.copy(builtin_specs_dir() / "apiyi.yaml", own)
    spec = load_spec(own)
    assert spec.provider == "apiyi"
    assert spec.models["happyhorse-1.0-i2v"].media["first_frame"].min_side == 300
