"""The closed windows of the KPI topic, in memory, for GET /kpis/windows.

Every worker reads the whole KPI topic (stream/export/kpi_feed.py) and applies each
record here, so every worker answers for every partition. Semantics are the topic's
own (it is compacted): the latest message of a key is what stays, and a tombstone
(`None`) deletes the key.

Bound: per series, that is per KPI, window size and dimension set (the key without
its window start), only the newest `kept` windows by window start stay
(`KPI_API_WINDOWS_KEPT`, 1440 by default: a day of 1-minute windows, two months of
hours). A message for a window older than all the kept ones of a full series is
dropped. Memory is about `series * kept * bytes per message`.

A message is kept as its compact JSON (orjson) with its window start and final flag
beside it, not as a dict. Measured with tracemalloc (tests/unit/test_window_store.py):
a first_response_time message with its sketch (10 samples, about 570 bytes of JSON)
takes about 0.73 KB stored, against 2.5 KB as a parsed dict; a count-only KPI
(resolved_issues, about 340 bytes of JSON) about 0.47 KB, against 1.2 KB. So about 160
bytes of bookkeeping per message on top of its JSON: 1000 series of 1440 windows of
such latency messages take about 1 GB, count-only ones about 0.7 GB.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms
from stream.kpi.windows import parse_duration_ms

DEFAULT_KEPT = 1440


@dataclass(slots=True)
class _Series:
    """The windows of one KPI, window size and dimension set, by window start."""

    dimensions: dict[str, str]
    order: tuple[str, int, str]  # (kpi, window size in ms, dimensions text): ties by start
    starts: list[int] = field(default_factory=list)  # ascending
    entries: dict[int, tuple[bool, bytes]] = field(default_factory=dict)  # is_final, JSON


def split_key(key: str) -> tuple[str, str, str, int] | None:
    """'<kpi>/<window>|<dimensions or all>|<window start>' -> (kpi, window, dims, start_ms);
    None for a key of another form."""
    kpi, slash, rest = key.partition("/")
    window, bar, rest = rest.partition("|")
    dims, bar2, start = rest.rpartition("|")
    if not (slash and bar and bar2 and kpi and window and dims):
        return None
    try:
        return kpi, window, dims, parse_rfc3339_ms(start)
    except TimestampError:
        return None


def _size_ms(window: str) -> int:
    try:
        return parse_duration_ms(window)
    except ValueError:
        return 0


class WindowStore:
    """Latest message per key of kpi.windows.v1, bounded per series; see the module doc."""

    def __init__(self, kept: int = DEFAULT_KEPT) -> None:
        if kept < 1:
            raise ValueError(f"kept must be at least 1, not {kept}")
        self.kept = kept
        self._series: dict[tuple[str, str], dict[str, _Series]] = {}
        self._count = 0
        self.skipped = 0  # records whose key or value was not a window message

    def __len__(self) -> int:
        return self._count

    def apply(self, key: str, message: dict[str, Any] | None) -> None:
        """One record of the topic: a message replaces the key's, None deletes it."""
        parts = split_key(key)
        if parts is None or (message is not None and not isinstance(message, dict)):
            self.skipped += 1
            return
        kpi, window, dims, start = parts
        by_dims = self._series.get((kpi, window))
        series = by_dims.get(dims) if by_dims is not None else None
        if message is None:
            if by_dims is None or series is None or series.entries.pop(start, None) is None:
                return  # a tombstone for a window not kept
            del series.starts[bisect_left(series.starts, start)]
            self._count -= 1
            if not series.entries:
                del by_dims[dims]
                if not by_dims:
                    del self._series[(kpi, window)]
            return
        if series is None:
            raw_dims = message.get("dimensions")
            dimensions = (
                {str(k): str(v) for k, v in raw_dims.items()} if isinstance(raw_dims, dict) else {}
            )
            series = _Series(dimensions, (kpi, _size_ms(window), dims))
            self._series.setdefault((kpi, window), {})[dims] = series
        # A copy: orjson's own result keeps a 4 KB buffer whatever the length of the JSON.
        entry = (message.get("is_final") is True, bytes(memoryview(orjson.dumps(message))))
        if start in series.entries:
            series.entries[start] = entry
            return
        if len(series.starts) >= self.kept and start < series.starts[0]:
            return  # older than every kept window of a full series
        series.entries[start] = entry
        if not series.starts or start > series.starts[-1]:
            series.starts.append(start)  # the usual case: a newer window
        else:
            insort(series.starts, start)
        self._count += 1
        if len(series.starts) > self.kept:
            del series.entries[series.starts.pop(0)]
            self._count -= 1

    def query(
        self,
        kpi: Iterable[str] | None = None,
        window: Iterable[str] | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        queue: str | None = None,
        priority: str | None = None,
        currency: str | None = None,
        final_only: bool = False,
        limit: int | None = None,
        channel: str | None = None,
    ) -> list[dict[str, Any]]:
        """The stored messages that match, oldest window start first (then by KPI, window
        size and dimensions), at most `limit`.

        kpi, window: sets of names, None for all; window_start in [from_ms, to_ms);
        queue, priority, currency, channel: the message's dimension must have that value (a
        message without that dimension does not match); final_only: only is_final ones.
        """
        kpis = None if kpi is None else set(kpi)
        windows = None if window is None else set(window)
        wanted = {"queue": queue, "priority": priority, "currency": currency, "channel": channel}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        lo = from_ms if from_ms is not None else -(2**63)
        hi = to_ms if to_ms is not None else 2**63
        ranges = []
        for (name, size_name), by_dims in self._series.items():
            if (kpis is not None and name not in kpis) or (
                windows is not None and size_name not in windows
            ):
                continue
            for series in by_dims.values():
                if all(series.dimensions.get(k) == v for k, v in wanted.items()):
                    ranges.append(_in_range(series, lo, hi, final_only))
        out: list[dict[str, Any]] = []
        if limit is not None and limit <= 0:
            return out
        for _, raw in heapq.merge(*ranges, key=lambda item: item[0]):
            out.append(orjson.loads(raw))
            if limit is not None and len(out) >= limit:
                break
        return out


def _in_range(
    series: _Series, lo: int, hi: int, final_only: bool
) -> Iterator[tuple[tuple[int, str, int, str], bytes]]:
    kpi, size, dims = series.order
    first, last = bisect_left(series.starts, lo), bisect_left(series.starts, hi)
    for start in series.starts[first:last]:
        final, raw = series.entries[start]
        if final or not final_only:
            yield (start, kpi, size, dims), raw
