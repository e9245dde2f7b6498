"""One bounded cache for the whole project: a dict that forgets its oldest entries.

Caches here hold derived values (a signed link, a key's digest, a parsed
path) that are cheap to recompute and expensive on a hot path. They are fed
by callers, so each has a size bound: a server that runs for weeks must not
grow with the number of distinct inputs it has seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``size`` entries; inserting past that drops the oldest first (FIFO).

    FIFO rather than LRU keeps a hit to one lookup, which is what the hot
    paths want; a value evicted while still in use is simply recomputed. An
    OrderedDict, because dropping the oldest entry of a plain dict over and
    over makes finding the next oldest scan the holes left at its front.
    """

    __slots__ = ("_data", "size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a cache needs room for at least one entry, got {size}")
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> V:
        data = self._data
        if len(data) >= self.size and key not in data:
            data.popitem(last=False)
        data[key] = value
        return value

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
