"""SLA clocks (H3 first response, H5 resolution): targets, open clocks, breaches.

A ticket breaches an SLA the moment its clock passes the target, whether or not it is
ever answered, so the clocks of open tickets are watched: `SlaIndex.expire` finds the
clocks that ran out, and `SlaIndex.counts` gives the "breaching now" and "will breach
soon" gauges. The clocks are derived from ticket state (created time, the priority in
force when the clock started, first response, first solve), so the index can always be
rebuilt from the tickets table after a restart or a rebalance.

Business hours and pauses are not applied yet: clocks run on calendar time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from stream.kpi.tickets import TicketState

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

    def target_ms(self, sla: str, priority: str) -> int:
        table = self.first_response_ms if sla == FIRST_RESPONSE else self.resolution_ms
        return table.get(priority, table["normal"])


@dataclass(frozen=True, slots=True)
class Clock:
    """An SLA clock still running: the ticket has not been answered (or solved) yet."""

    ticket_id: str
    sla: str
    queue: str
    priority: str  # the priority in force when the clock started
    deadline_ms: int
    breach_counted: bool = False  # its breach was counted when it ran out


def sla_priority(state: TicketState) -> str:
    return state.sla_priority or state.priority or "normal"


def _stop(state: TicketState, sla: str) -> tuple[int | None, bool]:
    """When the clock stopped (None: still running) and whether by its answer.

    First response stops at the first public agent reply, or without an answer at the
    first solve or close; resolution stops at the first solve, or at a close without one.
    """
    answer = state.first_response_at_ms if sla == FIRST_RESPONSE else state.first_solved_at_ms
    others = (
        (state.first_solved_at_ms, state.closed_at_ms)
        if sla == FIRST_RESPONSE
        else (state.closed_at_ms,)
    )
    times = [t for t in (answer, *others) if t is not None]
    if not times:
        return None, False
    stop = min(times)
    return stop, answer is not None and answer == stop


def settle_stopped_clocks(state: TicketState, policy: SlaPolicy) -> list[tuple[str, str]]:
    """Results of the clocks that have stopped since the last call, recorded in the state.

    'met': stopped by its answer within the target. 'breached': stopped after the target,
    unless the breach was already counted when the clock ran out. A clock stopped within
    the target without an answer (a ticket solved with no reply) has no result.
    """
    created = state.created_at_ms
    if created is None:
        return []
    results = []
    priority = sla_priority(state)
    for sla in (FIRST_RESPONSE, RESOLUTION):
        if sla in state.sla_done:
            continue
        stop, answered = _stop(state, sla)
        if stop is None:
            continue
        state.sla_done.append(sla)
        if stop - created > policy.target_ms(sla, priority):
            if sla not in state.sla_breached:
                results.append((sla, "breached"))
        elif answered:
            results.append((sla, "met"))
    return results


def open_clocks(state: TicketState, policy: SlaPolicy, queue: str) -> list[Clock]:
    """The running clocks of a ticket: created, and not yet settled."""
    if state.created_at_ms is None:
        return []
    priority = sla_priority(state)
    return [
        Clock(
            state.ticket_id,
            sla,
            queue,
            priority,
            state.created_at_ms + policy.target_ms(sla, priority),
            sla in state.sla_breached,
        )
        for sla in (FIRST_RESPONSE, RESOLUTION)
        if sla not in state.sla_done and _stop(state, sla)[0] is None
    ]


@dataclass
class SlaIndex:
    """The running clocks of one partition's tickets."""

    clocks: dict[str, list[Clock]] = field(default_factory=dict)  # ticket_id -> clocks

    def update(self, ticket_id: str, clocks: list[Clock]) -> None:
        if clocks:
            self.clocks[ticket_id] = clocks
        else:
            self.clocks.pop(ticket_id, None)

    def expire(self, now_ms: int, counted: Iterable[tuple[str, str]]) -> list[Clock]:
        """Running clocks past their deadline whose breach is not yet counted."""
        done = set(counted)
        return [
            clock
            for clocks in self.clocks.values()
            for clock in clocks
            if clock.deadline_ms <= now_ms
            and not clock.breach_counted
            and (clock.ticket_id, clock.sla) not in done
        ]

    def counts(self, now_ms: int, warn_ms: int) -> Counter[tuple[str, str, str, str]]:
        """(sla, queue, priority, state) -> running clocks, state 'breaching' (past the
        target) or 'at_risk' (reaching it within `warn_ms`)."""
        result: Counter[tuple[str, str, str, str]] = Counter()
        for clocks in self.clocks.values():
            for clock in clocks:
                if clock.deadline_ms <= now_ms:
                    result[(clock.sla, clock.queue, clock.priority, "breaching")] += 1
                elif clock.deadline_ms <= now_ms + warn_ms:
                    result[(clock.sla, clock.queue, clock.priority, "at_risk")] += 1
        return result
