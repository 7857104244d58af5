"""A customer: the support contacts, tickets and orders seen for them, and the KPI facts
that join the two streams (O7 conversion after contact, O8 retention, H8 tickets per
1,000 active customers).

Pure. Help-desk and order events are keyed by ticket and order; the worker re-keys the
few that matter here by customer (an *activity*: `contact`, `ticket` or `order`, with
its time and the id of the event it came from) onto a repartition topic, so that one
customer's activities meet on one partition, with no global state and no reads across
partitions. Activities are deduplicated by that event id (a re-sent activity after a
crash counts once). The state keeps the activities of the longest look-back only.
docs/kpis.md ("Customers") is the definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.kpi.contrib import NO_DIMS, Contribution

ACTIVITY_KINDS = ("contact", "ticket", "order")
MAX_ACTIVITIES = 2000  # per customer; more are a runaway producer, counted as dropped

# The customer's place in the active-customers count (H8): an "active:" count, carried
# across windows by the merge like the active tickets of H1.
ACTIVE_CUSTOMERS = "active:customers"


@dataclass(frozen=True, slots=True)
class CustomerRules:
    conversion_ms: int  # O7: an order within this long after a contact converts it
    active_ms: int  # H8: a customer with an order within this long is active
    retention_window_ms: int  # O8: the window size of retention

    @property
    def lookback_ms(self) -> int:
        """How long an activity matters: the longest of the three, plus one window of
        retention (its previous window)."""
        return max(self.conversion_ms, self.active_ms, 2 * self.retention_window_ms)


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    # [occurred_at_ms, kind, source event id, complaint (tickets only)]
    activities: list[list[Any]] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)  # starts of O7 periods run out
    live: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "activities": self.activities,
            "expired": self.expired,
            "live": self.live,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerState:
        return cls(
            customer_id=data["customer_id"],
            activities=[list(a) for a in data.get("activities", [])],
            expired=[int(x) for x in data.get("expired", [])],
            live=list(data.get("live", [])),
        )


def add_activity(
    state: CustomerState, activity: dict[str, Any], rules: CustomerRules
) -> str | None:
    """Record one activity; returns why not ('duplicate', 'full') or None.

    Activities older than the look-back before the newest one are dropped: they can no
    longer change a window that is not final (the look-back exceeds every window)."""
    source_id = str(activity["event_id"])
    if any(a[2] == source_id for a in state.activities):
        return "duplicate"
    if len(state.activities) >= MAX_ACTIVITIES:
        return "full"
    state.activities.append(
        [int(activity["t"]), str(activity["kind"]), source_id, bool(activity.get("complaint"))]
    )
    newest = max(a[0] for a in state.activities)
    horizon = newest - rules.lookback_ms - rules.retention_window_ms
    state.activities = [a for a in state.activities if a[0] >= horizon]
    state.expired = [s for s in state.expired if s >= horizon]
    return None


@dataclass(frozen=True, slots=True)
class Period:
    """An O7 period: from a contact, `conversion_ms` long, decided at its end."""

    customer_id: str
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class CustomerView:
    contributions: list[Contribution] = field(default_factory=list)
    timers: list[Period] = field(default_factory=list)
    newest_ms: int | None = None


def derive(state: CustomerState, rules: CustomerRules) -> CustomerView:
    """The customer's contributions and the O7 periods still open, from its activities."""
    acts = sorted(state.activities, key=lambda a: (a[0], a[2]))
    view = CustomerView(newest_ms=acts[-1][0] if acts else None)
    facts = view.contributions
    orders = [a[0] for a in acts if a[1] == "order"]

    # H8: tickets and complaints, at their time; active customers as +1/-1 moves.
    for t, kind, source_id, complaint in acts:
        if kind == "ticket":
            facts.append(Contribution(t, NO_DIMS, "tickets", 1, f"t{source_id}"))
            if complaint:
                facts.append(Contribution(t, NO_DIMS, "complaints", 1, f"t{source_id}"))
    active_from: int | None = None
    active_until = 0
    for t in orders:
        if active_from is not None and t < active_until:
            active_until = t + rules.active_ms  # still active: the period extends
            continue
        if active_from is not None:
            facts.append(Contribution(active_until, NO_DIMS, ACTIVE_CUSTOMERS, -1, "a"))
        active_from, active_until = t, t + rules.active_ms
        facts.append(Contribution(t, NO_DIMS, ACTIVE_CUSTOMERS, 1, "a"))
    if active_from is not None:
        facts.append(Contribution(active_until, NO_DIMS, ACTIVE_CUSTOMERS, -1, "a"))

    # O7: a contact opens a period unless one is open; decided at the period's end:
    # converted when an order was placed after the contact and within the period.
    period_end: int | None = None
    for t, kind, _, _ in acts:
        if kind not in ("contact", "ticket") or (period_end is not None and t < period_end):
            continue
        end = t + rules.conversion_ms
        period_end = end
        converted = any(t < o <= end for o in orders)
        ident = f"c{t}"
        if converted or t in state.expired:
            facts.append(Contribution(end, NO_DIMS, "conversion:contacted", 1, ident))
            if converted:
                facts.append(Contribution(end, NO_DIMS, "conversion:converted", 1, ident))
        else:
            view.timers.append(Period(state.customer_id, t, end))

    # O8: per retention window with an order, the next window's base; retained when the
    # customer orders in that next window too (at its first order there).
    size = rules.retention_window_ms
    windows = sorted({o // size for o in orders})
    first_in: dict[int, int] = {}
    for o in orders:
        first_in.setdefault(o // size, o)
    for k in windows:
        base_at = (k + 1) * size
        facts.append(Contribution(base_at, NO_DIMS, "retention:base", 1, f"rb{k}"))
        if k + 1 in first_in:
            facts.append(Contribution(first_in[k + 1], NO_DIMS, "retention:retained", 1, f"rr{k}"))
    return view


def expires_at_ms(view: CustomerView, rules: CustomerRules) -> int | None:
    return (
        None
        if view.newest_ms is None
        else view.newest_ms + rules.lookback_ms + rules.retention_window_ms
    )
