"""The frame sizes a provider's result videos come in: one per resolution and named ratio.

The services do not render at whatever aspect an input image happens to have: the output
follows the first frame only as closely as the provider's fixed sizes allow. So a probed
aspect snaps to the nearest named ratio and the size is read from the spec's table. That
keeps a task's reported ``ratio`` and the video it serves in agreement, and bounds the videos
a mock can be made to render to resolutions x ratios x durations per model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

__all__ = ["FrameSizes", "frame_sizes", "nearest_ratio"]


@dataclass(frozen=True, slots=True)
class FrameSizes:
    """``sizes[resolution][ratio]`` is a result's (width, height); ``ratios`` maps name to aspect.

    Every resolution has a row for every named ratio, and each row's own aspect is nearer its
    ratio than any other, so a size and the ratio reported with it cannot disagree.
    """

    ratios: Mapping[str, float]
    sizes: Mapping[str, Mapping[str, tuple[int, int]]]
    sources: Mapping[str, str]

    def nearest_ratio(self, aspect: float) -> str:
        """The named ratio closest to ``aspect`` (width / height) on a log scale.

        A log scale makes 1:2 and 2:1 equally far from 1:1; ties go to the ratio the spec
        names first.
        """
        return nearest_ratio(self.ratios, aspect)

    def size(self, resolution: str, ratio: str) -> tuple[int, int]:
        """The (width, height) of a result at this resolution and named ratio."""
        return self.sizes[resolution][ratio]


def nearest_ratio(ratios: Mapping[str, float], aspect: float) -> str:
    """The name in ``ratios`` (name to width / height) closest to ``aspect`` on a log scale."""
    return _nearest(tuple(ratios.items()), round(aspect, 4))


@lru_cache(maxsize=1024)
def _nearest(ratios: tuple[tuple[str, float], ...], aspect: float) -> str:
    # Every create asks this; the answers repeat (a spec's own sizes, common image shapes).
    return min(ratios, key=lambda item: abs(math.log(item[1] / aspect)))[0]


def frame_sizes(doc: Mapping[str, Any], fail: Callable[[str, str], Exception]) -> FrameSizes:
    """Read and cross-check ``resolutions.*.frames`` of a schema-valid spec document.

    ``fail(path, problem)`` builds the loader's error, so a broken table is reported with the
    spec file and the path inside it.
    """
    ratios = {name: float(aspect) for name, aspect in doc["ratios"].items()}
    _check_aspect_parameters(doc, ratios, fail)
    sizes: dict[str, Mapping[str, tuple[int, int]]] = {}
    for resolution, body in doc["resolutions"].items():
        where = f"resolutions.{resolution}.frames"
        rows = body["frames"]
        unknown = [name for name in rows if name not in ratios]
        if unknown:
            raise fail(where, f"{unknown} are not named under ratios")
        missing = [name for name in ratios if name not in rows]
        if missing:
            # Any named ratio can be reached (a first frame snaps to it), so each needs a size.
            raise fail(where, f"no frame size for ratio {', '.join(missing)}")
        for name, (width, height) in rows.items():
            snapped = nearest_ratio(ratios, width / height)
            if snapped != name:
                raise fail(
                    f"{where}.{name}",
                    f"{width}x{height} is nearer ratio {snapped} than {name} (width and height "
                    "swapped?)",
                )
        sizes[resolution] = MappingProxyType(
            {name: (rows[name][0], rows[name][1]) for name in ratios}
        )
    return FrameSizes(
        ratios=MappingProxyType(ratios),
        sizes=MappingProxyType(sizes),
        sources=MappingProxyType({r: body["source"] for r, body in doc["resolutions"].items()}),
    )


def _check_aspect_parameters(
    doc: Mapping[str, Any], ratios: Mapping[str, float], fail: Callable[[str, str], Exception]
) -> None:
    # A parameter that shapes the output must only offer named ratios, or a request the
    # validator accepts would have no frame size.
    for model, body in doc["models"].items():
        for source in body["output"]["aspect"]:
            param = body["parameters"].get(source)
            if param is None:
                continue
            offered = param.get("enum", [param["default"]] if "default" in param else [])
            unknown = [value for value in offered if str(value) not in ratios]
            if unknown:
                raise fail(
                    f"models.{model}.parameters.{source}",
                    f"shapes the output, but {unknown} are not named under ratios",
                )
