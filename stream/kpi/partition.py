"""Per-partition KPI aggregates: active-ticket counts and first-response windows.

One `PartitionKpis` per input partition this worker owns. Window state is kept here,
keyed by window start and pruned by the event-time watermark, rather than in Faust's
windowed tables, which expire by the wall clock and would lose a replay of history.

State is persisted by the caller as small pieces (`summary_dict`, `window_dict`) so a
first response rewrites one window, not the whole partition.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.sketch import QuantileSketch
from stream.kpi.tickets import ActiveKey, FirstResponse, TicketOutcome
from stream.kpi.windows import is_closed, window_end_ms, window_start_ms

# (queue label, priority) of a first response
Dims = tuple[str, str]
# (size_ms, start_ms) of a window
WindowId = tuple[int, int]
# One sketch of one window: (size_ms, start_ms, (queue, priority)). The unit of
# persistence, so a first response rewrites one small sketch, not a whole window.
PieceId = tuple[int, int, Dims]

# Closed windows kept in memory per size, so every partition of a worker can be
# merged on a common window even when their watermarks differ a little.
KEEP_CLOSED = 4


@dataclass(slots=True)
class ClosedWindow:
    size_ms: int
    start_ms: int
    sketches: dict[Dims, QuantileSketch]

    @property
    def end_ms(self) -> int:
        return window_end_ms(self.start_ms, self.size_ms)


@dataclass(slots=True)
class PartitionKpis:
    window_sizes_ms: tuple[int, ...]
    grace_ms: int
    relative_accuracy: float = 0.01
    active: Counter[ActiveKey] = field(default_factory=Counter)
    max_event_ms: int | None = None
    # Wall-clock time of the last event applied: a partition idle for longer than the
    # grace period has its watermark advanced by the wall clock in live mode.
    last_event_wall_ms: int | None = None
    late_first_responses_total: int = 0
    open_windows: dict[WindowId, dict[Dims, QuantileSketch]] = field(default_factory=dict)
    closed: dict[int, list[ClosedWindow]] = field(default_factory=dict)
    # The watermark of the last close_windows() call: what has really been closed.
    closed_watermark_ms: int | None = None

    # --- applying ticket outcomes ---------------------------------------------------
    def apply(self, outcome: TicketOutcome, event_time_ms: int, wall_ms: int) -> set[PieceId]:
        """Fold one ticket outcome in; returns the window sketches that changed."""
        self.max_event_ms = (
            event_time_ms if self.max_event_ms is None else max(self.max_event_ms, event_time_ms)
        )
        self.last_event_wall_ms = wall_ms
        for key, delta in outcome.active_moves:
            self.active[key] += delta
            if self.active[key] <= 0:
                del self.active[key]
        changed: set[PieceId] = set()
        for response in outcome.first_responses:
            changed |= self.add_first_response(response)
        return changed

    def add_first_response(self, response: FirstResponse) -> set[PieceId]:
        """Add a latency to the open window of every size that holds its time.

        A response whose window has already closed is late: it is counted, and the
        caller still observes it in the live histogram, but closed windows stay closed.
        """
        watermark = self.event_watermark_ms()
        changed: set[PieceId] = set()
        dims_key = (response.queue, response.priority)
        for size in self.window_sizes_ms:
            start = window_start_ms(response.responded_at_ms, size)
            if (
                watermark is not None
                and is_closed(start, size, watermark)
                and ((size, start) not in self.open_windows)
            ):
                self.late_first_responses_total += 1
                continue
            dims = self.open_windows.setdefault((size, start), {})
            sketch = dims.get(dims_key)
            if sketch is None:
                sketch = dims[dims_key] = QuantileSketch(self.relative_accuracy)
            sketch.add(response.latency_ms / 1000.0)
            changed.add((size, start, dims_key))
        return changed

    # --- time ---------------------------------------------------------------------
    def event_watermark_ms(self) -> int | None:
        """Max event time seen less the grace period: event time only."""
        return None if self.max_event_ms is None else self.max_event_ms - self.grace_ms

    def watermark_ms(self, now_ms: int | None) -> int | None:
        """The watermark that closes windows.

        With `now_ms` (live mode) a partition that has been idle for a grace period is
        advanced to `now - grace`, so windows close on time at night. A replay passes
        None: the wall clock must never close windows of replayed history.
        """
        watermark = self.event_watermark_ms()
        if now_ms is None:
            return watermark
        idle = self.last_event_wall_ms is None or now_ms - self.last_event_wall_ms >= self.grace_ms
        if idle:
            by_clock = now_ms - self.grace_ms
            watermark = by_clock if watermark is None else max(watermark, by_clock)
        return watermark

    def close_windows(self, now_ms: int | None) -> list[ClosedWindow]:
        """Close every open window the watermark has passed, oldest first."""
        watermark = self.watermark_ms(now_ms)
        if watermark is None:
            return []
        closing = sorted(
            (wid for wid in self.open_windows if is_closed(wid[1], wid[0], watermark)),
            key=lambda wid: (wid[1], wid[0]),
        )
        result = []
        for size, start in closing:
            window = ClosedWindow(size, start, self.open_windows.pop((size, start)))
            kept = self.closed.setdefault(size, [])
            kept.append(window)
            kept.sort(key=lambda w: w.start_ms)
            del kept[:-KEEP_CLOSED]
            result.append(window)
        self.closed_watermark_ms = watermark
        return result

    def closed_through_ms(self, size_ms: int) -> int | None:
        """Start of the newest window of `size_ms` this partition has closed, data or not."""
        if self.closed_watermark_ms is None:
            return None
        return window_start_ms(self.closed_watermark_ms, size_ms) - size_ms

    # --- persistence ----------------------------------------------------------------
    def summary_dict(self) -> dict[str, Any]:
        return {
            "active": [[*key, n] for key, n in self.active.items()],
            "max_event_ms": self.max_event_ms,
            "late_first_responses_total": self.late_first_responses_total,
        }

    def load_summary(self, data: dict[str, Any]) -> None:
        self.active = Counter({(q, p, s): n for q, p, s, n in data.get("active", [])})
        self.max_event_ms = data.get("max_event_ms")
        self.late_first_responses_total = data.get("late_first_responses_total", 0)

    def piece_dict(self, piece: PieceId) -> dict[str, Any] | None:
        """The persisted form of one open window sketch, None once its window closed."""
        size, start, dims = piece
        sketch = self.open_windows.get((size, start), {}).get(dims)
        return None if sketch is None else sketch.to_dict()

    def load_piece(self, piece: PieceId, data: dict[str, Any]) -> None:
        size, start, dims = piece
        self.open_windows.setdefault((size, start), {})[dims] = QuantileSketch.from_dict(data)
