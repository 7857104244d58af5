"""A mergeable quantile sketch with a relative-error guarantee (DDSketch), that can also
take a value back out.

Percentiles per window and dimension are kept as sketches, never as averages of
percentiles: two sketches merge exactly (bucket counts add up), so windows, partitions
and workers combine without bias. The bucket of a value is ddsketch's logarithmic
mapping, so a reported quantile is within `relative_accuracy` of the value of that rank.

Why not ddsketch's own DDSketch object: a late event can correct a window that is not
final yet (an earlier reply turns up, so the first response of a ticket shrinks), and a
correction removes the old value. A value always falls into the same bucket, so removing
it is an exact inverse of adding it; only the bucket counts and the sum are kept, which
is all a quantile needs (no min/max, which removal could not keep exact).
"""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache
from typing import Any

from ddsketch.mapping import LogarithmicMapping

DEFAULT_RELATIVE_ACCURACY = 0.01


@lru_cache(maxsize=8)
def _mapping(relative_accuracy: float) -> LogarithmicMapping:
    return LogarithmicMapping(relative_accuracy)


@lru_cache(maxsize=8)
def _bucket_values(relative_accuracy: float) -> dict[int, float]:
    """`float(mapping.value(key))` by key, filled as keys come up (a few hundred)."""
    return {}


def _bucket_value(mapping: LogarithmicMapping, values: dict[int, float], key: int) -> float:
    value = values.get(key)
    if value is None:
        value = values[key] = float(mapping.value(key))
    return value


class QuantileSketch:
    """Quantiles of non-negative values (latencies in seconds, counts of clicks)."""

    __slots__ = ("_mapping", "_values", "bins", "relative_accuracy", "sum", "zero_count")

    def __init__(self, relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY) -> None:
        self.relative_accuracy = relative_accuracy
        self._mapping = _mapping(relative_accuracy)
        self._values = _bucket_values(relative_accuracy)
        self.bins: dict[int, int] = {}
        self.zero_count = 0
        self.sum = 0.0

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.bins.values())

    def _key(self, value: float) -> int | None:
        """The bucket of a value; None for values too small to map (counted as zero)."""
        if value < 0:
            raise ValueError(f"sketch values must be >= 0, got {value}")
        return self._mapping.key(value) if value > self._mapping.min_possible else None

    def add(self, value: float, weight: int = 1) -> None:
        """Add `weight` copies of `value`; a negative weight removes copies added before."""
        key = self._key(value)
        if key is None:
            self.zero_count += weight
        else:
            n = self.bins.get(key, 0) + weight
            if n:
                self.bins[key] = n
            else:
                del self.bins[key]
        self.sum += value * weight
        if not self.bins and not self.zero_count:
            self.sum = 0.0  # no float residue once every value has been taken back

    def remove(self, value: float) -> None:
        self.add(value, -1)

    def merge(self, other: QuantileSketch) -> None:
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "cannot merge sketches of different accuracy "
                f"({self.relative_accuracy} and {other.relative_accuracy})"
            )
        for key, n in other.bins.items():
            total = self.bins.get(key, 0) + n
            if total:
                self.bins[key] = total
            else:
                self.bins.pop(key, None)
        self.zero_count += other.zero_count
        self.sum += other.sum

    def copy(self) -> QuantileSketch:
        result = QuantileSketch(self.relative_accuracy)
        result.bins = dict(self.bins)
        result.zero_count, result.sum = self.zero_count, self.sum
        return result

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), or None when the sketch is empty.

        DDSketch's rank convention: the value of rank floor(q (n - 1)), 0-based.
        """
        n = self.count
        if not n or not 0 <= q <= 1:
            return None
        rank = q * (n - 1)
        if rank < self.zero_count:
            return 0.0
        running = self.zero_count
        for key in sorted(self.bins):
            running += self.bins[key]
            if running > rank:
                return _bucket_value(self._mapping, self._values, key)
        return _bucket_value(self._mapping, self._values, max(self.bins))

    def quantiles(self, qs: tuple[float, ...]) -> list[float | None]:
        """`[self.quantile(q) for q in qs]`, sorting the bins once."""
        n = self.count
        if not n:
            return [None for _ in qs]
        keys = sorted(self.bins)
        if not keys:
            return [self.quantile(q) for q in qs]
        running = self.zero_count
        cumulative = []  # running count after each key, in key order
        for key in keys:
            c = self.bins[key]
            if c < 0:  # not a sorted sequence to bisect (never made by add/merge)
                return [self.quantile(q) for q in qs]
            running += c
            cumulative.append(running)
        out: list[float | None] = []
        for q in qs:
            if not 0 <= q <= 1:
                out.append(None)
                continue
            rank = q * (n - 1)
            if rank < self.zero_count:
                out.append(0.0)
                continue
            # The first key whose running count exceeds the rank; the largest if none.
            i = bisect_right(cumulative, rank)
            key = keys[i] if i < len(keys) else keys[-1]
            out.append(_bucket_value(self._mapping, self._values, key))
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, QuantileSketch)
            and self.relative_accuracy == other.relative_accuracy
            and self.bins == other.bins
            and self.zero_count == other.zero_count
        )

    def __repr__(self) -> str:
        return f"QuantileSketch(count={self.count}, sum={self.sum:g})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, for KPI messages: sparse bins as keys `k` with counts `c`,
        the zero count `z`, the sum `s` and the accuracy `a`."""
        keys = sorted(self.bins)
        return {
            "a": self.relative_accuracy,
            "k": keys,
            "c": [self.bins[k] for k in keys],
            "z": self.zero_count,
            "s": self.sum,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        result = cls(float(data["a"]))
        result.bins = {int(k): int(c) for k, c in zip(data["k"], data["c"], strict=True) if c}
        result.zero_count = int(data["z"])
        result.sum = float(data["s"])
        return result
