"""SLA clocks (H3 first response, H5 resolution): targets, open clocks, breaches.

A ticket breaches an SLA the moment its clock passes the target, whether or not it is
ever answered, so the clocks of open tickets are watched: `SlaIndex.due` finds the
clocks the watermark has passed, and `SlaIndex.counts` gives the "breaching now" and
"will breach soon" gauges. The clocks are derived from ticket state (tickets.derive), so
the index can always be rebuilt from the tickets table after a restart or a rebalance.

With business hours (stream/kpi/calendar.py) a target counts open time only.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from sortedcontainers import SortedList

from stream.kpi.calendar import BusinessCalendar

HOUR_MS = 3_600_000
FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"


@dataclass(frozen=True)
class SlaPolicy:
    """Targets per priority. Defaults from KPIS.md: first response urgent 1 h, high 4 h,
    normal 24 h, low 48 h; resolution within two days."""

    first_response_ms: dict[str, int] = field(
        default_factory=lambda: {
            "urgent": 1 * HOUR_MS,
            "high": 4 * HOUR_MS,
            "normal": 24 * HOUR_MS,
            "low": 48 * HOUR_MS,
        }
    )
    resolution_ms: dict[str, int] = field(
        default_factory=lambda: {p: 48 * HOUR_MS for p in ("urgent", "high", "normal", "low")}
    )
    # "Will breach within" horizon of the at-risk gauge.
    warn_ms: int = 15 * 60_000
    # Business hours: targets count open time only. None: around the clock.
    calendar: BusinessCalendar | None = None
    # Which priority sets the target: "initial" (when the clock started, the default)
    # or "current" (the ticket's latest priority; a change moves the deadline).
    priority_rule: str = "initial"

    def target_ms(self, sla: str, priority: str) -> int:
        table = self.first_response_ms if sla == FIRST_RESPONSE else self.resolution_ms
        return table.get(priority, table["normal"])

    def deadline_ms(self, sla: str, priority: str, start_ms: int) -> int:
        """When the clock started at `start_ms` passes its target."""
        target = self.target_ms(sla, priority)
        if self.calendar is None:
            return start_ms + target
        return self.calendar.add(start_ms, target)


GaugeKey = tuple[str, str, str]  # (sla, queue, priority)


class _ClockLike(Protocol):
    ticket_id: str
    sla: str
    queue: str
    priority: str
    deadline_ms: int
    breach_recorded: bool


@dataclass
class SlaIndex:
    """The running clocks of one partition's tickets, with a heap of their deadlines so
    that the clocks the watermark passes are found without scanning them all, and the
    deadlines sorted per SLA, queue and priority so that the gauges of a scrape are two
    binary searches per label set, not a walk over every open ticket's clocks."""

    clocks: dict[str, list[_ClockLike]] = field(default_factory=dict)  # ticket_id -> clocks
    _heap: list[tuple[int, str, str]] = field(default_factory=list)
    # (sla, queue, priority) -> deadlines of the running clocks.
    _deadlines: dict[GaugeKey, SortedList] = field(default_factory=dict)

    def update(self, ticket_id: str, clocks: list[Any]) -> None:
        previous = self.clocks.get(ticket_id, ())
        before = {(c.sla, c.deadline_ms) for c in previous}
        # What the ticket's clocks put into the sorted deadlines, and what they put now
        # (clocks are derived anew each time, never changed in place).
        old = [((c.sla, c.queue, c.priority), c.deadline_ms) for c in previous]
        entries = [((c.sla, c.queue, c.priority), c.deadline_ms) for c in clocks]
        if clocks:
            self.clocks[ticket_id] = clocks
        else:
            self.clocks.pop(ticket_id, None)
        for clock in clocks:
            if not clock.breach_recorded and (clock.sla, clock.deadline_ms) not in before:
                heapq.heappush(self._heap, (clock.deadline_ms, ticket_id, clock.sla))
        if entries == old:
            return  # most events move no deadline
        for key, deadline in old:
            self._deadlines[key].remove(deadline)
        for key, deadline in entries:
            deadlines = self._deadlines.get(key)
            if deadlines is None:
                deadlines = self._deadlines[key] = SortedList()
            deadlines.add(deadline)

    def due(self, now_ms: int) -> list[tuple[str, str]]:
        """(ticket_id, sla) of running clocks whose deadline is at or before `now_ms` and
        whose breach is not recorded yet; each is returned once."""
        out = []
        while self._heap and self._heap[0][0] <= now_ms:
            deadline, ticket_id, sla = heapq.heappop(self._heap)
            for clock in self.clocks.get(ticket_id, ()):
                if clock.sla == sla and clock.deadline_ms == deadline and not clock.breach_recorded:
                    out.append((ticket_id, sla))
        return out

    def counts(self, now_ms: int, warn_ms: int) -> Counter[tuple[str, str, str, str]]:
        """(sla, queue, priority, state) -> running clocks, state 'breaching' (past the
        target) or 'at_risk' (reaching it within `warn_ms`)."""
        result: Counter[tuple[str, str, str, str]] = Counter()
        for (sla, queue, priority), deadlines in self._deadlines.items():
            breaching = deadlines.bisect_right(now_ms)
            at_risk = deadlines.bisect_right(now_ms + warn_ms) - breaching
            if breaching:
                result[(sla, queue, priority, "breaching")] = breaching
            if at_risk:
                result[(sla, queue, priority, "at_risk")] = at_risk
        return result
