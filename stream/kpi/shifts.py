"""Agent shifts, for H12 (tickets solved per agent-hour): who is on shift, and for how long.

Live, the count of agents on shift is a gauge; Prometheus integrates it into agent-hours
(`avg_over_time(kpistream_agents_on_shift[1h])` is the agent-hours of that hour), so no
agent id ever becomes a label.

Per window, the agent-hours are the overlap of each agent's on-shift intervals with the
window: a function of the agent's set of shift events, like a ticket's KPIs of its
events. An interval still open counts up to the partition's event time, which the tick
moves on. Time is cut into pieces at every window boundary (`step_ms`, the greatest
common divisor of the window sizes), so each piece lies in one window of every size.
"""

from __future__ import annotations

from typing import Any

from stream.kpi.contrib import NO_DIMS, Contribution

AGENT_SECONDS = "agent_seconds"
# Shift events kept per agent: enough for the open windows (two a day per agent).
MAX_SHIFT_EVENTS = 64


def apply_shift(
    stored: dict[str, Any] | None, state: str, at_ms: int
) -> tuple[dict[str, Any], int]:
    """The agent's new shift record and the change in the on-shift count (-1, 0 or +1).

    The newest event time wins: an `off` delivered after a later `on` changes nothing.
    The record keeps the agent's recent events too, for the per-window agent-hours.
    """
    before_on = stored is not None and stored.get("state") == "on"
    events = [list(e) for e in (stored or {}).get("events", [])]
    events = sorted([*events, [at_ms, state]])[-MAX_SHIFT_EVENTS:]
    if stored is not None and at_ms < int(stored.get("at_ms", -(2**62))):
        return {**stored, "events": events}, 0
    record = {"state": state, "at_ms": at_ms, "events": events}
    return record, int(state == "on") - int(before_on)


def on_intervals(events: list[list[Any]]) -> list[tuple[int, int | None]]:
    """[start, end) of the agent's time on shift; end None while still on. Events in
    event-time order (an `off` before an `on` of the same millisecond)."""
    out: list[tuple[int, int | None]] = []
    since: int | None = None
    for at, state in sorted((int(e[0]), str(e[1])) for e in events):
        if state == "on" and since is None:
            since = at
        elif state == "off" and since is not None:
            out.append((since, at))
            since = None
    if since is not None:
        out.append((since, None))
    return out


def agent_pieces(
    intervals: list[tuple[int, int | None]], low_ms: int, high_ms: int, step_ms: int
) -> list[Contribution]:
    """The agent's time on shift between `low_ms` and `high_ms`, cut at every `step_ms`
    boundary: one `agent_seconds` contribution per piece, at the piece's step start."""
    out = []
    for start, end in intervals:
        a, b = max(start, low_ms), min(high_ms if end is None else end, high_ms)
        while a < b:
            cut = min(b, (a // step_ms + 1) * step_ms)
            piece = Contribution(a - a % step_ms, NO_DIMS, AGENT_SECONDS, (cut - a) / 1000, "shift")
            out.append(piece)
            a = cut
    return out
