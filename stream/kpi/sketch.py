"""A mergeable quantile sketch with a relative-error guarantee (DDSketch).

Percentiles per window and dimension are kept as sketches, never as averages of
percentiles: two sketches merge exactly (bucket counts add up), so windows, partitions
and workers combine without bias. DDSketch guarantees that a reported quantile is within
`relative_accuracy` of a value of the right rank.
"""

from __future__ import annotations

from typing import Any

from ddsketch import DDSketch
from ddsketch.store import DenseStore

DEFAULT_RELATIVE_ACCURACY = 0.01


class QuantileSketch:
    """Quantiles of non-negative values (latencies in seconds, counts of clicks)."""

    __slots__ = ("_sketch", "relative_accuracy")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        self.relative_accuracy = relative_accuracy
        self._sketch = DDSketch(relative_accuracy)

    @property
    def count(self) -> int:
        return int(self._sketch.count)

    @property
    def sum(self) -> float:
        return float(self._sketch.sum)

    def add(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"sketch values must be >= 0, got {value}")
        self._sketch.add(value)

    def merge(self, other: QuantileSketch) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "cannot merge sketches of different accuracy "
                f"({self.relative_accuracy} and {other.relative_accuracy})"
            )
        if other.count:
            self._sketch.merge(other._sketch)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), or None when the sketch is empty."""
        if not self.count:
            return None
        value = self._sketch.get_quantile_value(q)
        return None if value is None else float(value)

    # The store layout below is ddsketch's DenseStore (bins from `offset` upwards);
    # only non-negative values are added, so the negative store stays empty.
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for table changelogs and KPI messages."""
        sketch: Any = self._sketch
        store: Any = sketch._store
        return {
            "a": self.relative_accuracy,
            # Sparse bins: (index, count) of the non-empty ones; a latency sketch touches
            # a few hundred of the thousand-odd buckets between its min and max.
            "k": [store.offset + i for i, b in enumerate(store.bins) if b],
            "c": [int(b) for b in store.bins if b],
            "z": int(sketch._zero_count),
            "s": float(sketch._sum),
            "mn": None if not self.count else float(sketch._min),
            "mx": None if not self.count else float(sketch._max),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        result = cls(float(data["a"]))
        sketch: Any = result._sketch
        store = DenseStore()
        for index, count in zip(data["k"], data["c"], strict=True):
            store.add(int(index), count)
        sketch._store = store
        sketch._zero_count = float(data["z"])
        sketch._count = float(store.count + data["z"])
        sketch._sum = float(data["s"])
        if data["mn"] is not None:
            sketch._min = float(data["mn"])
            sketch._max = float(data["mx"])
        return result
