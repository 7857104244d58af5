"""Per-partition KPI state: the live active-issues gauge and the event-time windows.

One `PartitionKpis` per input partition this worker owns. Window state is the product's
own, keyed by window start and closed by event time, never Faust's windowed tables,
which expire by the wall clock and would lose a replay of history.

Windows are not persisted piece by piece: they are a pure function of the partition's
tickets (every ticket's contributions), so a restart or a rebalance rebuilds the windows
that are not final yet from the tickets table (`rebuild`). Only the marks (newest event
time, and the watermark up to which windows are final) are persisted.

A window of size s starting at t:
- is *closed* once the partition's event time reaches t + s: its partial goes out;
- is re-sent when a late event changes it (at most once per tick);
- is *final* once the watermark (event time - grace) reaches t + s: sent a last time,
  then dropped. An event contributing to a final window is late.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.contrib import ACTIVE_PREFIX, ALL_DIMS, SAMPLE_NAMES, Contribution, Dims
from stream.kpi.sketch import QuantileSketch
from stream.kpi.tickets import ActiveKey
from stream.kpi.windows import window_start_ms

WindowId = tuple[int, int]  # (size_ms, start_ms)

# Final windows kept per size for the "newest closed window" gauges of /metrics.
KEEP_FINAL = 2


@dataclass(slots=True)
class DimsAgg:
    """One dimension set of one window: counts by name and sketches by name."""

    counts: dict[str, float] = field(default_factory=dict)
    sketches: dict[str, QuantileSketch] = field(default_factory=dict)


@dataclass(slots=True)
class Window:
    size_ms: int
    start_ms: int
    dims: dict[Dims, DimsAgg] = field(default_factory=dict)

    def add(self, c: Contribution, weight: int, relative_accuracy: float) -> None:
        agg = self.dims.get(c.dims)
        if agg is None:
            agg = self.dims[c.dims] = DimsAgg()
        name = c.name
        if name in SAMPLE_NAMES:
            sketch = agg.sketches.get(name)
            if sketch is None:
                sketch = agg.sketches[name] = QuantileSketch(relative_accuracy)
            sketch.add(c.value, weight)
        else:
            counts = agg.counts
            counts[name] = counts.get(name, 0) + c.value * weight


@dataclass(frozen=True, slots=True)
class FinalWindow:
    """A final window as the snapshot sees it (this partition's part)."""

    size_ms: int
    start_ms: int
    dims: dict[Dims, DimsAgg]


ActiveCounts = dict[Dims, dict[str, float]]  # dims -> status -> tickets


@dataclass(slots=True)
class PartitionKpis:
    window_sizes_ms: tuple[int, ...]
    grace_ms: int
    relative_accuracy: float = 0.01
    active: Counter[ActiveKey] = field(default_factory=Counter)  # the live gauge
    max_event_ms: int | None = None
    # Wall-clock time of the last event: a partition idle for longer than the grace
    # period follows the wall clock in live mode.
    last_event_wall_ms: int | None = None
    # Windows ending at or before it are final (sent for the last time, dropped).
    final_through_ms: int | None = None
    windows: dict[WindowId, Window] = field(default_factory=dict)
    # Per size: active tickets at the start of the oldest window that is not final.
    active_base: dict[int, ActiveCounts] = field(default_factory=dict)
    sent: set[WindowId] = field(default_factory=set)  # closed, partial sent, not final
    dirty_from: dict[int, int] = field(default_factory=dict)  # size -> oldest changed start
    late: Counter[str] = field(default_factory=Counter)  # not yet reported, by fact name
    late_total: int = 0  # contributions that came too late, ever
    recent_final: dict[int, list[FinalWindow]] = field(default_factory=dict)
    # Rebuilt after a restart or a rebalance: what was sent before is unknown, so the
    # next close first tells the merge to forget this partition's windows that are not
    # final, then sends them all again (a dimension set a change emptied is not left
    # behind in the merge).
    reset_pending: bool = False
    # After a rebuild: the newest event time the tables knew, held back until the
    # partition has read its records again up to where it was (`hold_event_time`).
    held_max_event_ms: int | None = None

    # --- time ---------------------------------------------------------------------
    def observe(self, event_time_ms: int, wall_ms: int) -> bool:
        """Note an event's time; True when the partition's event time moved forward."""
        self.last_event_wall_ms = wall_ms
        if self.final_through_ms is None:
            # Windows that ended a grace period before the first event are final: an
            # event for them is late, exactly as it would be later in the stream.
            self.final_through_ms = event_time_ms - self.grace_ms
        if self.max_event_ms is None or event_time_ms > self.max_event_ms:
            self.max_event_ms = event_time_ms
            return True
        return False

    def hold_event_time(self) -> None:
        """After a rebuild: no event time until the partition reads its records again.

        The tables of a killed worker are not one moment of its past: each changelog
        partition stops at its own point, and a RocksDB store adds its local writes to
        the changelog's tail, so a ticket may hold events read after others that the
        tables lack, and the persisted marks may be ahead of both. Time taken from them
        would make windows final, or run SLA clocks out, before the missing events are
        read again. So the time starts again with the events read again (duplicates
        included), which is never ahead of the time they were first read at; windows up
        to the final mark stay final. `release_event_time` gives back the newest time
        the tables knew once the partition has read again all it had read before."""
        if self.max_event_ms is None or self.final_through_ms is None:
            return
        self.held_max_event_ms, self.max_event_ms = self.max_event_ms, None

    def release_event_time(self) -> None:
        """The records read before the rebuild are read again: the held time is safe."""
        held, self.held_max_event_ms = self.held_max_event_ms, None
        if held is not None and (self.max_event_ms is None or held > self.max_event_ms):
            self.max_event_ms = held

    def _idle(self, now_ms: int | None) -> bool:
        return now_ms is not None and (
            self.last_event_wall_ms is None or now_ms - self.last_event_wall_ms >= self.grace_ms
        )

    def event_watermark_ms(self) -> int | None:
        """Newest event time less the grace period: event time only."""
        return None if self.max_event_ms is None else self.max_event_ms - self.grace_ms

    def watermark_ms(self, now_ms: int | None) -> int | None:
        """The watermark that finalizes windows.

        With `now_ms` (live mode) a partition idle for a grace period follows the wall
        clock, so windows close on time at night. A replay passes None: the wall clock
        must never close windows of replayed history.
        """
        watermark = self.event_watermark_ms()
        if self._idle(now_ms):
            assert now_ms is not None
            by_clock = now_ms - self.grace_ms
            watermark = by_clock if watermark is None else max(watermark, by_clock)
        return watermark

    def event_mark_ms(self, now_ms: int | None) -> int | None:
        """The event time that closes windows: the newest event, or the wall clock for
        an idle partition in live mode."""
        if self._idle(now_ms):
            assert now_ms is not None
            return now_ms if self.max_event_ms is None else max(self.max_event_ms, now_ms)
        return self.max_event_ms

    def next_start_ms(self, size_ms: int) -> int | None:
        """Start of the oldest window of `size_ms` that is not final."""
        if self.final_through_ms is None:
            return None
        return window_start_ms(self.final_through_ms, size_ms)

    # --- contributions ------------------------------------------------------------
    def apply(self, changes: Iterable[tuple[Contribution, int]]) -> int:
        """Add (+1) or take back (-1) contributions; returns how many were late."""
        late = 0
        windows, sent, accuracy = self.windows, self.sent, self.relative_accuracy
        final_through = self.final_through_ms
        # (size, start of its oldest window that is not final): fixed while applying.
        sizes = [
            (size, None if final_through is None else window_start_ms(final_through, size))
            for size in self.window_sizes_ms
        ]
        for c, weight in changes:
            is_late = False
            at = c.at_ms
            for size, first_open in sizes:
                start = (at // size) * size  # window_start_ms
                if first_open is not None and start < first_open:
                    is_late = True
                    if c.name.startswith(ACTIVE_PREFIX):
                        # Keep the base equal to the sum of all moves before it, so the
                        # windows after it still show the right active counts.
                        self._add_active(self.active_base.setdefault(size, {}), c, weight)
                    continue
                wid = (size, start)
                window = windows.get(wid)
                if window is None:
                    window = windows[wid] = Window(size, start)
                window.add(c, weight, accuracy)
                if wid in sent:
                    self.dirty_from[size] = min(self.dirty_from.get(size, start), start)
            if is_late:
                late += 1
                self.late_total += 1
                self.late[c.name.split(":")[0]] += 1
        return late

    @staticmethod
    def _add_active(counts: ActiveCounts, c: Contribution, weight: int) -> None:
        status = c.name[len(ACTIVE_PREFIX) :]
        by_status = counts.setdefault(c.dims, {})
        by_status[status] = by_status.get(status, 0) + c.value * weight

    def rebuild(self, contributions: Iterable[Contribution]) -> None:
        """Rebuild the windows that are not final (and the active bases) from every
        contribution of the partition's tickets, after a restart or a rebalance."""
        self.windows.clear()
        self.active_base.clear()
        self.sent.clear()
        self.dirty_from.clear()
        late_before, total_before = self.late.copy(), self.late_total
        self.apply((c, 1) for c in contributions)
        # Contributions to windows that are final already were counted when they came.
        self.late, self.late_total = late_before, total_before
        self.reset_pending = True
        for base in self.active_base.values():
            for dims in [d for d, by in base.items() if not any(by.values())]:
                del base[dims]

    # --- closing ------------------------------------------------------------------
    def close(self, partition: int, now_ms: int | None) -> list[dict[str, Any]]:
        """Partials of the windows that closed, changed or became final since the last
        call, oldest first, one message per window and dimension set."""
        watermark, event_mark = self.watermark_ms(now_ms), self.event_mark_ms(now_ms)
        if watermark is None or event_mark is None or self.final_through_ms is None:
            return []
        out: list[dict[str, Any]] = []
        if self.reset_pending:
            out.append({"partition": partition, "reset_from_ms": self.final_through_ms})
            self.reset_pending = False
        for size in self.window_sizes_ms:
            start = window_start_ms(self.final_through_ms, size)
            base = self.active_base.get(size, {})
            running: ActiveCounts = {d: dict(by) for d, by in base.items()}
            dirty = self.dirty_from.pop(size, None)
            # Windows from `start` to `first_open` become final now (the loop ends at
            # `end`). Their ids leave `sent` whether they hold data or not.
            first_open = window_start_ms(watermark, size)
            end = window_start_ms(event_mark, size)
            first_open = min(first_open, end)
            self.sent -= {w for w in self.sent if w[0] == size and start <= w[1] < first_open}
            # Starts of the windows with data: an empty final window sends nothing and
            # changes no active count, so a span of them is skipped in one step (an old
            # first event would otherwise cost one iteration per empty window up to now).
            filled = sorted(s for z, s in self.windows if z == size and s >= start)
            upcoming = 0
            while start + size <= event_mark:
                wid = (size, start)
                window = self.windows.get(wid)
                if window is None and start < first_open:
                    while upcoming < len(filled) and filled[upcoming] <= start:
                        upcoming += 1
                    following = filled[upcoming] if upcoming < len(filled) else first_open
                    self.active_base[size] = {
                        d: {s: n for s, n in by.items() if n}
                        for d, by in running.items()
                        if any(by.values())
                    }
                    start = min(following, first_open)
                    continue
                if window is not None:
                    for dims, agg in window.dims.items():
                        for name, value in agg.counts.items():
                            if name.startswith(ACTIVE_PREFIX):
                                status = name[len(ACTIVE_PREFIX) :]
                                by = running.setdefault(dims, {})
                                by[status] = by.get(status, 0) + value
                final = start + size <= watermark
                if final or wid not in self.sent or (dirty is not None and start >= dirty):
                    out += window_partials(partition, size, start, window, running, final)
                if final:
                    self.active_base[size] = {
                        d: {s: n for s, n in by.items() if n}
                        for d, by in running.items()
                        if any(by.values())
                    }
                    self.windows.pop(wid, None)
                    self.sent.discard(wid)
                    if window is not None:
                        kept = self.recent_final.setdefault(size, [])
                        kept.append(FinalWindow(size, start, window.dims))
                        del kept[:-KEEP_FINAL]
                else:
                    self.sent.add(wid)
                start += size
        self.final_through_ms = max(self.final_through_ms, watermark)
        return out

    def final_through_start_ms(self, size_ms: int) -> int | None:
        """Start of the newest window of `size_ms` this partition has made final."""
        if self.final_through_ms is None:
            return None
        return window_start_ms(self.final_through_ms, size_ms) - size_ms

    # --- persistence --------------------------------------------------------------
    def summary_dict(self) -> dict[str, Any]:
        """The marks; everything else is rebuilt from the tickets."""
        return {"max_event_ms": self.max_event_ms, "final_through_ms": self.final_through_ms}

    def load_summary(self, data: dict[str, Any]) -> None:
        self.max_event_ms = data.get("max_event_ms")
        self.final_through_ms = data.get("final_through_ms")


def dims_key(dims: Dims) -> str:
    return "\x1f".join(dims)


def parse_dims_key(text: str) -> Dims:
    queue, _, priority = text.rpartition("\x1f")
    return (queue, priority)


def window_partials(
    partition: int,
    size_ms: int,
    start_ms: int,
    window: Window | None,
    active_end: ActiveCounts,
    final: bool,
) -> list[dict[str, Any]]:
    """The messages one partition sends for one window: one per dimension set that had a
    contribution in it (a quiet window sends nothing: its active counts did not change).

    `active_delta` is the net change of the active counts within the window, so the
    merge can tell a window that changed them from one that did not."""
    if window is None:
        return []
    out = []
    total_end: dict[str, float] = {}
    for by in active_end.values():
        for status, n in by.items():
            total_end[status] = total_end.get(status, 0) + n
    total_delta: dict[str, float] = {}
    for agg in window.dims.values():
        for k, v in agg.counts.items():
            if k.startswith(ACTIVE_PREFIX):
                status = k[len(ACTIVE_PREFIX) :]
                total_delta[status] = total_delta.get(status, 0) + v
    out.append(
        {
            "size_ms": size_ms,
            "start_ms": start_ms,
            "partition": partition,
            "dims": dims_key(ALL_DIMS),
            "final": final,
            "counts": {},
            "sketches": {},
            "active_end": total_end,
            "active_delta": total_delta,
        }
    )
    for dims in sorted(window.dims):
        agg = window.dims[dims]
        counts = {k: v for k, v in agg.counts.items() if not k.startswith(ACTIVE_PREFIX)}
        delta = {
            k[len(ACTIVE_PREFIX) :]: v for k, v in agg.counts.items() if k.startswith(ACTIVE_PREFIX)
        }
        out.append(
            {
                "size_ms": size_ms,
                "start_ms": start_ms,
                "partition": partition,
                "dims": dims_key(dims),
                "final": final,
                "counts": counts,
                "sketches": {k: s.to_dict() for k, s in agg.sketches.items()},
                "active_end": dict(active_end.get(dims, {})),
                "active_delta": delta,
            }
        )
    return out
