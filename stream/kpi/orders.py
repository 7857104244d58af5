"""An order: the set of its events, and every KPI fact of O1-O6 that set implies.

Pure, and built like a ticket (tickets.py): the stored state is the order's events (the
fields the KPIs read) with their ids; `derive` walks them in event-time order and
returns the order's contributions to the windows and its running timers. A late event
is inserted where it belongs and the order derived again, so the windows that are not
final stay exact whatever order the events arrived in. docs/kpis.md ("Orders") is the
definition; tests/oracle_windows.py implements it independently.

Every order event carries the order id and is keyed by it, so one order's events are
applied by one worker; `customer.contacted` (the customer asked support about this
order) is an order event too, which makes O5 a join within the order.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.contrib import Contribution, Dims
from stream.kpi.events import Event
from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms

CONFIRM_TARGET_MS = 60_000  # O2: confirmed within a minute
SHIP_NOTICE_TARGET_MS = 15 * 60_000  # O4: told within 15 minutes of the shipment
ONLINE_CHANNELS = frozenset({"web", "app"})  # O3: where a customer confirms by clicking

# Timers (a miss is counted when the watermark passes the target, answered or not).
CONFIRM = "confirm"
SHIP_NOTICE = "ship_notice"

# Events kept per order; more are a runaway producer, counted as dropped.
MAX_ORDER_EVENTS = 200

_FIELDS: dict[str, tuple[str, ...]] = {
    "order.placed": ("channel",),
    "order.confirmed": ("clicks",),
    "notification.sent": ("kind",),
}


@dataclass(slots=True)
class OrderState:
    order_id: str
    customer_id: str | None = None
    # [occurred_at_ms, type, position of its id in `ids`, {field: value}]
    events: list[list[Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # every event id seen: the dedupe set
    expired: list[str] = field(default_factory=list)  # timers the watermark passed
    live: list[str] = field(default_factory=list)  # facts the live counters counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "events": self.events,
            "ids": self.ids,
            "expired": self.expired,
            "live": self.live,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderState:
        return cls(
            order_id=data["order_id"],
            customer_id=data.get("customer_id"),
            events=[list(e) for e in data.get("events", [])],
            ids=list(data.get("ids", [])),
            expired=list(data.get("expired", [])),
            live=list(data.get("live", [])),
        )


def add_event(state: OrderState, event: Event) -> str | None:
    """Record the event in the order; returns why not ('duplicate', 'full') or None."""
    if event.event_id in state.ids:
        return "duplicate"
    if len(state.events) >= MAX_ORDER_EVENTS:
        return "full"
    fields = {k: event.body[k] for k in _FIELDS.get(event.type, ()) if k in event.body}
    if event.type == "order.shipped" and isinstance(event.body.get("promised_by"), str):
        # The schema checks the format; an impossible date promises nothing.
        with contextlib.suppress(TimestampError):
            fields["promised_by_ms"] = parse_rfc3339_ms(event.body["promised_by"])
    state.events.append([event.occurred_at_ms, event.type, len(state.ids), fields])
    state.ids.append(event.event_id)
    if state.customer_id is None:
        state.customer_id = event.body.get("customer_id")
    return None


@dataclass(frozen=True, slots=True)
class Timer:
    """A target not met yet whose miss is not recorded: due at `deadline_ms`."""

    order_id: str
    name: str
    deadline_ms: int


@dataclass(slots=True)
class OrderView:
    contributions: list[Contribution] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    placed_at_ms: int | None = None
    newest_ms: int | None = None


def _sorted_events(state: OrderState) -> list[list[Any]]:
    # Ties: the placement first (it defines the order), then by event id.
    return sorted(state.events, key=lambda e: (e[0], e[1] != "order.placed", state.ids[e[2]]))


def derive(state: OrderState) -> OrderView:
    """The order's contributions (O1-O6) and running timers, from its events.

    Only events ordered after the (first) placement count: an order is its placement,
    and an event without one is kept until it arrives.
    """
    view = OrderView(newest_ms=max((e[0] for e in state.events), default=None))
    ordered = _sorted_events(state)
    start = next((i for i, e in enumerate(ordered) if e[1] == "order.placed"), None)
    if start is None:
        return view
    placed_at, _, _, placed_fields = ordered[start]
    after = ordered[start + 1 :]
    view.placed_at_ms = placed_at
    channel = str(placed_fields.get("channel") or "unknown")
    dims: Dims = (channel, "")
    facts = view.contributions
    append, new, C = facts.append, tuple.__new__, Contribution

    def fact(at_ms: int, name: str, value: float = 1.0, ident: str = "") -> None:
        # Contribution(...) without its Python-level __new__
        append(new(C, (at_ms, dims, name, value, ident or name.split(":")[0])))

    # The first event of each type after the placement (`_first` of each, in one pass)
    # and its place in `after`.
    firsts: dict[str, list[Any]] = {}
    places: dict[str, int] = {}
    for i, e in enumerate(after):
        if e[1] not in firsts and e[0] >= -(2**62):
            firsts[e[1]] = e
            places[e[1]] = i

    fact(placed_at, "placed")
    confirmed = firsts.get("order.confirmed")
    cancelled = firsts.get("order.cancelled")
    if cancelled is not None:
        fact(cancelled[0], "cancelled")

    # O1, O3: the first confirmation.
    if confirmed is not None:
        at, clicks = confirmed[0], int(confirmed[3].get("clicks", 0))
        fact(at, "confirmation_seconds", (at - placed_at) / 1000.0, "confirmation")
        if channel in ONLINE_CHANNELS:
            fact(at, "clicks:confirmed")
            if clicks <= 1:
                fact(at, "clicks:one")

    # O2: confirmed within the minute; missed when the minute passes unconfirmed, unless
    # the order was cancelled first.
    deadline = placed_at + CONFIRM_TARGET_MS
    cancelled_in_time = cancelled is not None and cancelled[0] <= deadline
    if confirmed is not None and confirmed[0] <= deadline:
        fact(confirmed[0], "confirm_sla:met")
    elif confirmed is not None or CONFIRM in state.expired:
        if not cancelled_in_time:  # a cancelled order was not waiting
            fact(deadline, "confirm_sla:missed")
    elif not cancelled_in_time:
        view.timers.append(Timer(state.order_id, CONFIRM, deadline))

    # O4: a shipment notice within 15 minutes of the (first) shipment.
    shipped = firsts.get("order.shipped")
    if shipped is not None:
        fact(shipped[0], "shipped")
        notice = next(
            (
                e
                for e in after
                if e[1] == "notification.sent"
                and e[3].get("kind") == "shipped"
                and e[0] >= shipped[0]
            ),
            None,
        )
        due = shipped[0] + SHIP_NOTICE_TARGET_MS
        if notice is not None and notice[0] <= due:
            fact(notice[0], "ship_notice:met")
        elif notice is not None or SHIP_NOTICE in state.expired:
            fact(due, "ship_notice:missed")
        else:
            view.timers.append(Timer(state.order_id, SHIP_NOTICE, due))

    # O5: after the (first) delay, whichever comes first: the delay notice, the
    # customer's contact about the order, or the end of the order without either.
    delayed = firsts.get("order.delayed")
    if delayed is not None:
        fact(delayed[0], "delayed")
        for e in after[places["order.delayed"] + 1 :]:
            if e[1] == "notification.sent" and e[3].get("kind") == "delayed":
                fact(e[0], "delay_notice:told_first")
                break
            if e[1] == "customer.contacted":
                fact(e[0], "delay_notice:contact_first")
                break
            if e[1] in ("order.delivered", "order.cancelled"):
                fact(e[0], "delay_notice:not_told")
                break

    # O6: delivered by the date promised at the (first) shipment.
    delivered = firsts.get("order.delivered")
    if delivered is not None:
        fact(delivered[0], "delivered")
        promised = shipped[3].get("promised_by_ms") if shipped is not None else None
        if promised is not None:
            fact(delivered[0], "on_time:delivered")
            if delivered[0] <= int(promised):
                fact(delivered[0], "on_time:met")
    return view


def expires_at_ms(view: OrderView, retention_ms: int) -> int | None:
    """When the order's state may be dropped: its newest event time + the retention."""
    return None if view.newest_ms is None else view.newest_ms + retention_ms
