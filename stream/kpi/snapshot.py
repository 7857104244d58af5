"""What the exporters read: one consistent, immutable view of a worker's KPIs.

Built from the partitions this worker actively owns (never standby copies, or the
sum across workers would double-count), merged by sketch merge, never by averaging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from stream.kpi.contrib import Dims
from stream.kpi.partition import PartitionKpis
from stream.kpi.sketch import QuantileSketch
from stream.kpi.tickets import ActiveKey
from stream.kpi.windows import window_end_ms

QUANTILES = (0.5, 0.9, 0.99)
FIRST_RESPONSE_SAMPLE = "first_response_seconds"


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """First-response latency quantiles of one closed window, per dimension and overall."""

    size_ms: int
    start_ms: int
    by_dims: dict[Dims, QuantileSketch]
    overall: QuantileSketch

    @property
    def end_ms(self) -> int:
        return window_end_ms(self.start_ms, self.size_ms)


@dataclass(frozen=True, slots=True)
class KpiSnapshot:
    partitions: tuple[int, ...]
    active: dict[ActiveKey, int]
    first_response_windows: dict[int, WindowSummary]  # by window size
    late_first_responses_total: int
    watermarks_ms: dict[int, int | None] = field(default_factory=dict)
    # (sla, queue, priority, 'breaching' | 'at_risk') -> running clocks
    sla_clocks: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    agents_on_shift: int = 0


def build_snapshot(
    parts: Mapping[int, PartitionKpis],
    now_ms: int | None,
    relative_accuracy: float = 0.01,
    sla_clocks: Mapping[tuple[str, str, str, str], int] | None = None,
) -> KpiSnapshot:
    """Merge the given partitions into one snapshot.

    For each window size the snapshot shows the newest window that every partition with
    a watermark has made final, so a gauge never mixes a finished partition with one
    still accepting late events for the same minute.
    """
    active: Counter[ActiveKey] = Counter()
    late = 0
    watermarks: dict[int, int | None] = {}
    for partition, kpis in parts.items():
        active.update(kpis.active)
        late += kpis.late_total
        watermarks[partition] = kpis.watermark_ms(now_ms)

    windows: dict[int, WindowSummary] = {}
    sizes = {size for kpis in parts.values() for size in kpis.window_sizes_ms}
    for size in sorted(sizes):
        through = [
            t for kpis in parts.values() if (t := kpis.final_through_start_ms(size)) is not None
        ]
        if not through:
            continue
        start = min(through)
        by_dims: dict[Dims, QuantileSketch] = {}
        overall = QuantileSketch(relative_accuracy)
        for kpis in parts.values():
            for window in kpis.recent_final.get(size, ()):
                if window.start_ms != start:
                    continue
                for dims, agg in window.dims.items():
                    sketch = agg.sketches.get(FIRST_RESPONSE_SAMPLE)
                    if sketch is None or not sketch.count:
                        continue
                    by_dims.setdefault(dims, QuantileSketch(relative_accuracy)).merge(sketch)
                    overall.merge(sketch)
        windows[size] = WindowSummary(size, start, by_dims, overall)

    return KpiSnapshot(
        partitions=tuple(sorted(parts)),
        active={key: n for key, n in active.items() if n > 0},
        first_response_windows=windows,
        late_first_responses_total=late,
        watermarks_ms=watermarks,
        sla_clocks=dict(sla_clocks or {}),
    )
