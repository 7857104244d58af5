"""Agent shifts, for H12 (tickets solved per agent-hour): who is on shift now.

The count of agents on shift is a gauge; Prometheus integrates it into agent-hours
(`avg_over_time(kpistream_agents_on_shift[1h])` is the agent-hours of that hour), so no
agent id ever becomes a label.
"""

from __future__ import annotations

from typing import Any


def apply_shift(
    stored: dict[str, Any] | None, state: str, at_ms: int
) -> tuple[dict[str, Any], int]:
    """The agent's new shift record and the change in the on-shift count (-1, 0 or +1).

    The newest event time wins: an `off` delivered after a later `on` changes nothing.
    """
    before_on = stored is not None and stored.get("state") == "on"
    if stored is not None and at_ms < int(stored.get("at_ms", -(2**62))):
        return stored, 0
    record = {"state": state, "at_ms": at_ms}
    after_on = state == "on"
    return record, int(after_on) - int(before_on)
