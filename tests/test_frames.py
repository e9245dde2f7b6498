"""Result frame sizes come from each spec's table, so a model reaches only a few video shapes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from contracts.lifecycle import output_shape
from contracts.media import MediaInfo
from contracts.spec import ModelRules, Spec, SpecError, SpecSet, load_specs
from contracts.task import MediaItem, OutputShape, TaskRequest
from tests.test_spec import copy_specs, edit

# First frames across every allowed aspect (1:2.5 to 2.5:1), 211 of them.
SWEEP = [(width, 1000) for width in range(400, 2501, 10)]


def _values(rules: ModelRules, name: str) -> list[Any]:
    param = rules.parameters.get(name)
    if param is None or not param.supported:
        return [None]
    if param.enum is not None:
        return list(param.enum)
    assert param.minimum is not None and param.maximum is not None
    return list(range(int(param.minimum), int(param.maximum) + 1))


def _requests(rules: ModelRules) -> Iterator[TaskRequest]:
    """Every request that could shape the output differently: each resolution, duration,
    explicit or default value of each aspect parameter, and a sweep of first-frame aspects."""
    aspect_params = [s for s in rules.aspect_sources if s in rules.parameters]
    aspect_media = [s for s in rules.aspect_sources if s not in rules.parameters]
    for resolution in _values(rules, "resolution"):
        for duration in _values(rules, "duration"):
            base = {"resolution": resolution, "duration": duration}
            choices: list[tuple[dict[str, Any], frozenset[str]]] = [(base, frozenset())]
            for name in aspect_params:
                choices += [({**base, name: v}, frozenset({name})) for v in _values(rules, name)]
            frames = [()] + [
                tuple(
                    MediaItem(t, "data:", "data", MediaInfo("image", "png", 1, w, h))
                    for t in aspect_media
                )
                for w, h in SWEEP
            ]
            for parameters, explicit in choices:
                params = MappingProxyType({k: v for k, v in parameters.items() if v is not None})
                for media in frames:
                    yield TaskRequest(rules.name, "x", media, params, explicit)


def _reachable(spec: Spec, rules: ModelRules) -> set[OutputShape]:
    return {output_shape(spec, rules, request) for request in _requests(rules)}


def _models(specs: SpecSet) -> list[tuple[str, str]]:
    return [(spec.provider, model) for spec in specs for model in spec.models]


@pytest.mark.parametrize(("provider", "model"), _models(load_specs()))
def test_each_model_reaches_only_its_table_rows(specs: SpecSet, provider: str, model: str) -> None:
    spec = specs[provider]
    rules = spec.models[model]
    shapes = _reachable(spec, rules)

    resolutions = [r for r in _values(rules, "resolution") if r is not None] or [
        max(spec.resolutions, key=lambda r: math.prod(spec.resolutions[r][:2]))
    ]
    durations = _values(rules, "duration")
    assert len(shapes) <= len(resolutions) * len(spec.ratios) * len(durations) <= 200
    for shape in shapes:
        # The size and the ratio reported with it are one row of the table.
        resolution = next(r for r in resolutions if spec.resolutions[r][2] == shape.sr)
        assert (shape.width, shape.height) == spec.frames.size(resolution, shape.ratio)
    if any(s not in rules.parameters for s in rules.aspect_sources):
        # A first frame can reach every named ratio, nothing in between.
        assert {s.ratio for s in shapes} == set(spec.ratios)


def test_a_probed_first_frame_snaps_to_the_nearest_named_ratio(specs: SpecSet) -> None:
    spec = specs["anyfast"]
    rules = spec.models["happyhorse-1.0-i2v"]

    def shape(width: int, height: int, **parameters: Any) -> tuple[int, int, str]:
        info = MediaInfo("image", "png", 1, width, height)
        request = TaskRequest(
            rules.name,
            "x",
            (MediaItem("first_frame", "data:", "data", info),),
            MappingProxyType({"resolution": "720P", "duration": 5, **parameters}),
            frozenset(parameters),
        )
        out = output_shape(spec, rules, request)
        return out.width, out.height, out.ratio

    assert shape(400, 700) == (720, 1280, "9:16")  # 0.571: nearest 9:16 (0.5625)
    assert shape(400, 600) == (832, 1104, "3:4")  # 0.667: nearer 3:4 than 9:16
    assert shape(1000, 1010) == (960, 960, "1:1")
    assert shape(1000, 400) == (1280, 720, "16:9")  # 2.5:1, beyond every ratio
    # An explicit ratio outranks the first frame on this model (output.aspect: [ratio, ...]).
    assert shape(400, 700, ratio="4:3") == (1104, 832, "4:3")


def test_table_rows_keep_the_resolution_pixel_count(specs: SpecSet) -> None:
    for spec in specs:
        for resolution, rows in spec.frames.sizes.items():
            width, height, _ = spec.resolutions[resolution]
            assert set(rows) == set(spec.ratios)
            for ratio, (w, h) in rows.items():
                assert w * h == pytest.approx(width * height, rel=0.03), (resolution, ratio)
                assert w / h == pytest.approx(spec.ratios[ratio], rel=0.03), (resolution, ratio)


def test_apiyi_inherits_dashscope_frame_table(specs: SpecSet) -> None:
    assert specs["apiyi"].frames.sizes == specs["dashscope"].frames.sizes
    assert specs["apiyi"].frames.sources == specs["dashscope"].frames.sources


def _set_frames(resolution: str, rows: dict[str, list[int]]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["resolutions"][resolution]["frames"] = rows

    return change


def _drop_ratio_default(doc: dict[str, Any]) -> None:
    ratio = doc["models"]["happyhorse-1.0-t2v"]["parameters"]["ratio"]
    ratio["enum"] = [*ratio["enum"], "21:9"]


_720 = {"16:9": [1280, 720], "9:16": [720, 1280], "1:1": [960, 960], "4:3": [1104, 832]}


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        (_set_frames("720P", _720), "resolutions.720P.frames", "no frame size for ratio 3:4"),
        (
            _set_frames("720P", {**_720, "3:4": [832, 1104], "2:1": [1280, 640]}),
            "resolutions.720P.frames",
            "['2:1'] are not named under ratios",
        ),
        (
            _set_frames("720P", {**_720, "3:4": [1104, 832]}),
            "resolutions.720P.frames.3:4",
            "1104x832 is nearer ratio 4:3 than 3:4",
        ),
        (
            _set_frames("720P", {**_720, "3:4": [833, 1104]}),
            "resolutions.720P.frames.3:4.0",
            "multiple of 2",
        ),
        (
            _drop_ratio_default,
            "models.happyhorse-1.0-t2v.parameters.ratio",
            "shapes the output, but ['21:9'] are not named under ratios",
        ),
    ],
    ids=["ratio missing", "unknown ratio", "swapped sides", "odd side", "parameter off-table"],
)
def test_a_broken_frame_table_names_the_path(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], path: str, problem: str
) -> None:
    directory = copy_specs(tmp_path)
    edit(directory / "anyfast.yaml", change)
    with pytest.raises(SpecError) as caught:
        load_specs(directory)
    assert caught.value.path == path, str(caught.value)
    assert problem in str(caught.value)
