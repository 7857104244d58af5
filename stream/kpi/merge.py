"""Merging per-partition window results into one result per window, for the KPI topic.

Each input partition closes its windows on its own watermark and sends a *partial*: the
window's sketches for that partition. A window's final result needs the partials of
every partition, and only the partitions themselves know when they have none left to
send: each also reports its watermark after its partials. A window is final when every
partition's watermark has reached its end; then its partials are merged (sketch merge,
never averaging) and the window is emitted once.

Pure: the state is plain dicts, which the merge agent keeps in a changelogged table.
"""

from __future__ import annotations

from typing import Any

from stream.kpi.sketch import QuantileSketch
from stream.kpi.timefmt import format_rfc3339_ms
from stream.kpi.windows import format_duration_ms, window_end_ms

FIRST_RESPONSE_TIME = "first_response_time"
DIMENSIONS = ("queue", "priority")


def window_key(kpi: str, size_ms: int, start_ms: int) -> str:
    return f"{kpi}|{size_ms}|{start_ms}"


def parse_window_key(key: str) -> tuple[str, int, int]:
    kpi, size, start = key.split("|")
    return kpi, int(size), int(start)


def partial(
    kpi: str, size_ms: int, start_ms: int, partition: int, sketches: dict[tuple[str, str], Any]
) -> dict[str, Any]:
    """The message a partition sends for one closed window (sketches as dicts)."""
    return {
        "window": window_key(kpi, size_ms, start_ms),
        "partition": partition,
        "sketches": {"\x1f".join(dims): sketch for dims, sketch in sorted(sketches.items())},
    }


def is_final(size_ms: int, start_ms: int, watermarks: dict[int, int], partitions: int) -> bool:
    """Every source partition has reported a watermark at or past the window's end."""
    if len(watermarks) < partitions:
        return False
    return min(watermarks.values()) >= window_end_ms(start_ms, size_ms)


def merged_messages(
    key: str, partials: dict[str, dict[str, Any]], emitted_at_ms: int
) -> list[tuple[str, dict[str, Any]]]:
    """The KPI messages of one final window: one per dimension set, and one for all.

    Message key: `<kpi>/<window>|<dimensions>|<window start>`; compacted, so a repeat of
    the same final result replaces itself.
    """
    kpi, size_ms, start_ms = parse_window_key(key)
    by_dims: dict[str, QuantileSketch] = {}
    for sketches in partials.values():
        for dims_key, data in sketches.items():
            sketch = QuantileSketch.from_dict(data)
            if dims_key in by_dims:
                by_dims[dims_key].merge(sketch)
            else:
                by_dims[dims_key] = sketch
    overall: QuantileSketch | None = None
    messages = []
    for dims_key, sketch in sorted(by_dims.items()):
        labels = dict(zip(DIMENSIONS, dims_key.split("\x1f"), strict=True))
        messages.append(_message(kpi, size_ms, start_ms, labels, sketch, emitted_at_ms))
        if overall is None:
            overall = QuantileSketch.from_dict(sketch.to_dict())
        else:
            overall.merge(sketch)
    if overall is not None:
        messages.append(_message(kpi, size_ms, start_ms, {}, overall, emitted_at_ms))
    return messages


def _message(
    kpi: str,
    size_ms: int,
    start_ms: int,
    dims: dict[str, str],
    sketch: QuantileSketch,
    emitted_at_ms: int,
) -> tuple[str, dict[str, Any]]:
    window = format_duration_ms(size_ms)
    dims_text = ",".join(f"{k}={v}" for k, v in dims.items()) or "all"
    start = format_rfc3339_ms(start_ms)
    key = f"{kpi}/{window}|{dims_text}|{start}"
    value = {
        "kpi": kpi,
        "window": window,
        "window_start": start,
        "window_end": format_rfc3339_ms(window_end_ms(start_ms, size_ms)),
        "dimensions": dims,
        "revision": 0,
        "is_final": True,
        "values": {
            "count": sketch.count,
            "sum_seconds": sketch.sum,
            "p50_seconds": sketch.quantile(0.5),
            "p90_seconds": sketch.quantile(0.9),
            "p99_seconds": sketch.quantile(0.99),
        },
        "sketch": sketch.to_dict(),
        "emitted_at": format_rfc3339_ms(emitted_at_ms),
        "schema_version": 1,
    }
    return key, value
