"""A ticket: the set of its events, and every KPI fact that set implies.

Pure. The stored state is the ticket's events (the fields the KPIs read) with their ids;
`derive` walks them in event-time order and returns the ticket's contributions to the
windows, its running SLA clocks and its place in the active-issues gauge. Nothing
depends on the order the events arrived in: a late event is inserted where it belongs
and the ticket is derived again (docs/kpis.md, "Ticket histories", is the definition;
tests/oracle_windows.py implements it independently).

The Faust agent keeps the state in a changelogged table keyed by ticket_id, so one
ticket's events are applied by exactly one worker, and the windows of a partition can
always be rebuilt from its tickets.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.contrib import Contribution, Dims, session_contributions
from stream.kpi.events import ACTIVE_STATUSES, Event
from stream.kpi.sla import FIRST_RESPONSE, RESOLUTION, SlaPolicy
from stream.kpi.surveys import nps_category

# A ticket's place in the active-issues gauge: (queue label, priority, status).
ActiveKey = tuple[str, str, str]

# Events kept per ticket. A ticket with more is a runaway producer: the rest are
# counted as dropped (kpistream_events_dropped_total), never silently lost.
MAX_TICKET_EVENTS = 1000

# The fields each event type contributes; the rest of the event is not stored.
_FIELDS: dict[str, tuple[str, ...]] = {
    "ticket.created": ("queue", "priority", "channel", "subject_kind"),
    "ticket.replied": ("author", "public", "handle_seconds"),
    "ticket.status_changed": ("status",),
    "ticket.assigned": ("queue",),
    "ticket.priority_changed": ("priority",),
    "ticket.solved": ("method", "settled_amount"),
    "survey.csat": ("score",),
    "survey.nps": ("score",),
    "selfservice.session": ("screens", "clicks", "succeeded"),
}

# The fields of a money object the KPIs read (settled_amount of ticket.solved).
_MONEY_FIELDS = ("value", "currency")

_WAITING = ("new", "open")
_STATUS_OF = {"ticket.solved": "solved", "ticket.closed": "closed", "ticket.reopened": "open"}


@dataclass(slots=True)
class TicketState:
    ticket_id: str
    customer_id: str | None = None
    # [occurred_at_ms, type, position of its id in `ids`, {field: value}]
    events: list[list[Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # every event id seen: the dedupe set
    # SLAs whose clock the watermark passed while running: breached, for good.
    breached: list[str] = field(default_factory=list)
    # Facts already counted by the live counters (never counted twice).
    live: list[str] = field(default_factory=list)
    counted_as: ActiveKey | None = None  # where the active-issues gauge counts it

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "customer_id": self.customer_id,
            "events": self.events,
            "ids": self.ids,
            "breached": self.breached,
            "live": self.live,
            "counted_as": list(self.counted_as) if self.counted_as else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketState:
        counted = data.get("counted_as")
        return cls(
            ticket_id=data["ticket_id"],
            customer_id=data.get("customer_id"),
            events=[list(e) for e in data.get("events", [])],
            ids=list(data.get("ids", [])),
            breached=list(data.get("breached", [])),
            live=list(data.get("live", [])),
            counted_as=(counted[0], counted[1], counted[2]) if counted else None,
        )


def add_event(state: TicketState, event: Event) -> str | None:
    """Record the event in the ticket; returns why not ('duplicate', 'full') or None."""
    if event.event_id in state.ids:
        return "duplicate"
    if len(state.events) >= MAX_TICKET_EVENTS:
        return "full"
    fields = {k: event.body[k] for k in _FIELDS.get(event.type, ()) if k in event.body}
    money = fields.get("settled_amount")
    if isinstance(money, dict):
        # Only what H11 reads: an unknown field inside the money object (of any depth:
        # orjson writes at most 255 levels) must not reach the tickets table.
        fields["settled_amount"] = {k: money[k] for k in _MONEY_FIELDS if k in money}
    state.events.append([event.occurred_at_ms, event.type, len(state.ids), fields])
    state.ids.append(event.event_id)
    if event.type == "ticket.created" and state.customer_id is None:
        state.customer_id = event.body.get("customer_id")
    return None


def _settled_value(value: Any) -> float | None:
    """A settled amount as a float; None for one that is not a finite amount >= 0.

    The schema rejects those (a negative value, more than 15 integer digits): this keeps
    a ticket stored before that bound from counting a negative or infinite amount."""
    if value is None:
        return None
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return None
    return amount if 0 <= amount < math.inf else None


@dataclass(slots=True)
class Clock:
    """An SLA clock still running: not answered and not stopped."""

    ticket_id: str
    sla: str
    queue: str  # label of the ticket's current queue, for the gauges
    priority: str  # the priority when the clock started
    deadline_ms: int
    breach_recorded: bool = False  # the watermark passed it: breached, counted once


@dataclass(slots=True)
class TicketView:
    """Everything the KPIs need of a ticket, derived from its events."""

    contributions: list[Contribution] = field(default_factory=list)
    clocks: list[Clock] = field(default_factory=list)
    active_key: ActiveKey | None = None
    created_at_ms: int | None = None
    status: str | None = None
    newest_ms: int | None = None


def sort_key(state: TicketState) -> Callable[[list[Any]], tuple[int, int, str]]:
    """Event-time order; ties: ticket.created first, then by event id."""
    ids = state.ids
    return lambda e: (e[0], 0 if e[1] == "ticket.created" else 1, ids[e[2]])


_new_tuple = tuple.__new__  # Contribution(...) without the Python-level __new__


def derive(state: TicketState, policy: SlaPolicy, queue_label: Callable[[str], str]) -> TicketView:
    """The ticket's contributions, running clocks and gauge place (docs/kpis.md).

    Runs for every event: the current queue label and dimensions are kept in locals
    (`queue_label` maps a value the same way every time), contributions are built
    with tuple.__new__ (what Contribution(...) calls)."""
    order = sorted(state.events, key=sort_key(state))
    view = TicketView(newest_ms=order[-1][0] if order else None)
    out = view.contributions
    index = None
    for number, (t, kind, pos, f) in enumerate(order):
        # sessions count whether or not the ticket exists
        if kind == "selfservice.session":
            out += session_contributions(
                t,
                int(f.get("screens", 0)),
                int(f.get("clicks", 0)),
                bool(f.get("succeeded")),
                f"#{pos}",
            )
        elif index is None and kind == "ticket.created":
            index = number
    if index is None:
        return view
    new, append, C = _new_tuple, out.append, Contribution
    created_at, _, _, cf = order[index]
    view.created_at_ms = created_at
    queue, priority, status = (
        str(cf.get("queue") or "unknown"),
        str(cf.get("priority") or "normal"),
        "new",
    )
    complaint = cf.get("subject_kind") == "complaint"
    first_priority = priority
    label = queue_label(queue)  # of the current queue
    d: Dims = (label, priority)  # the current dimensions
    # Changes of the queue label and of the status, in event time, from the creation:
    # "the state at time T" is the last change before T.
    queue_times, queue_labels = [created_at], [label]
    status_times, statuses = [created_at], ["new"]

    append(new(C, (created_at, d, "created", 1, "c")))
    if complaint:
        append(new(C, (created_at, d, "created_complaint", 1, "c")))
    key: ActiveKey | None = (label, priority, "new")
    append(new(C, (created_at, d, "active:new", 1, "a")))

    first_solve = first_close = last_solve = None
    # Places in the event order of the answers and stops: at the same millisecond the
    # order decides whether a reply answered a clock or came after its stop.
    place: dict[str, int] = {}
    touches = 0
    touches_at_first_solve = 0
    first_solve_dims: Dims = d
    first_close_dims: Dims = d
    # Events ordered before the creation count, in the creation's dimensions, but do
    # not set the state: the creation does.
    for number, (t, kind, pos, f) in enumerate(order):
        if number == index or kind == "ticket.created":
            continue
        if kind == "ticket.replied":
            if f.get("author") == "agent" and f.get("public") is True:
                ident = f"#{pos}"
                touches += 1
                append(new(C, (t, d, "agent_replies", 1, ident)))
                if f.get("handle_seconds") is not None:
                    append(new(C, (t, d, "handle_seconds", float(f["handle_seconds"]), ident)))
                if "reply" not in place:
                    place["reply"] = number
                    wait = max(0, t - created_at) / 1000.0
                    append(new(C, (t, d, "first_response_seconds", wait, "fr")))
        elif kind == "ticket.solved":
            ident = f"#{pos}"
            method = str(f.get("method") or "agent")
            append(new(C, (t, d, f"solved:{method}", 1, ident)))
            settled = f.get("settled_amount") or {}
            amount = _settled_value(settled.get("value"))
            if amount is not None and settled.get("currency"):
                currency = str(settled["currency"])
                append(new(C, (t, d, f"settled:{currency}", amount, ident)))
                append(new(C, (t, d, f"settled_solves:{currency}", 1, ident)))
            if first_solve is None:
                first_solve, first_solve_dims, touches_at_first_solve = t, d, touches
                place["solve"] = number
            last_solve = t
        elif kind == "ticket.closed":
            if first_close is None:
                first_close, first_close_dims = t, d
                place["close"] = number
                final_solve = last_solve if last_solve is not None else t
                full = max(0, final_solve - created_at) / 1000.0
                append(new(C, (t, d, "full_resolution_seconds", full, "x1")))
        elif kind == "ticket.reopened":
            append(new(C, (t, d, "reopened", 1, f"#{pos}")))
        elif kind == "ticket.escalated":
            ident = f"#{pos}"
            append(new(C, (t, d, "escalated", 1, ident)))
            if complaint:
                append(new(C, (t, d, "escalated_complaint", 1, ident)))
        elif kind == "survey.csat":
            append(new(C, (t, d, f"csat:{int(f['score'])}", 1, f"#{pos}")))
        elif kind == "survey.nps":
            append(new(C, (t, d, f"nps:{nps_category(int(f['score']))}", 1, f"#{pos}")))
        if number < index:  # before the creation: sets no state
            continue
        # --- the state this event sets ---
        if kind == "ticket.status_changed":
            status = str(f["status"])
            status_times.append(t)
            statuses.append(status)
        elif kind in _STATUS_OF:
            status = _STATUS_OF[kind]
            status_times.append(t)
            statuses.append(status)
        elif kind == "ticket.assigned" and f.get("queue") is not None:
            queue = str(f["queue"])
            label = queue_label(queue)
            d = (label, priority)
            queue_times.append(t)
            queue_labels.append(label)
        elif kind == "ticket.priority_changed" and f.get("priority") is not None:
            priority = str(f["priority"])
            d = (label, priority)
        new_key: ActiveKey | None = (label, priority, status) if status in ACTIVE_STATUSES else None
        if new_key != key:
            if key is not None:
                append(new(C, (t, (key[0], key[1]), f"active:{key[2]}", -1, "a")))
            if new_key is not None:
                append(new(C, (t, (new_key[0], new_key[1]), f"active:{new_key[2]}", 1, "a")))
            key = new_key

    def waiting_ms(until: int) -> int:
        """Time in new/open between the creation and `until`."""
        total = 0
        for i, (since, st) in enumerate(zip(status_times, statuses, strict=True)):
            end = status_times[i + 1] if i + 1 < len(status_times) else until
            if st in _WAITING:
                total += max(0, min(end, until) - since)
        return total

    if first_solve is not None:
        d, t = first_solve_dims, first_solve
        append(new(C, (t, d, "resolution_seconds", max(0, t - created_at) / 1000.0, "s1")))
        append(new(C, (t, d, "requester_wait_seconds", waiting_ms(t) / 1000.0, "s1")))
        append(new(C, (t, d, "first_solves", 1, "s1")))
        append(new(C, (t, d, "touches", touches_at_first_solve, "s1")))
        if touches_at_first_solve == 1:
            append(new(C, (t, d, "one_touch", 1, "s1")))
    if first_close is not None:
        work = waiting_ms(first_close) / 1000.0
        append(new(C, (first_close, first_close_dims, "agent_work_seconds", work, "x1")))

    def queue_at(at: int) -> str:
        return queue_labels[max(0, bisect_left(queue_times, at) - 1)]

    clock_priority = priority if policy.priority_rule == "current" else first_priority
    for sla, answer, stoppers in _CLOCKS:
        deadline = policy.deadline_ms(sla, clock_priority, created_at)
        stops = [place[s] for s in (answer, *stoppers) if s in place]
        ident = f"sla:{sla}"
        recorded = sla in state.breached
        stop_at = order[min(stops)][0] if stops else None
        if recorded or (stop_at is not None and stop_at > deadline):
            d = (queue_at(deadline), clock_priority)
            append(new(C, (deadline, d, f"sla:{sla}:breached", 1, ident)))
        elif stop_at is not None and place.get(answer) == min(stops):
            d = (queue_at(stop_at), clock_priority)
            append(new(C, (stop_at, d, f"sla:{sla}:met", 1, ident)))
        if not stops:
            view.clocks.append(
                Clock(state.ticket_id, sla, label, clock_priority, deadline, recorded)
            )
    view.active_key = key
    view.status = status
    return view


# The SLA clocks: (sla, what answers it, what else stops it).
_CLOCKS = (
    (FIRST_RESPONSE, "reply", ("solve", "close")),
    (RESOLUTION, "solve", ("close",)),
)


def expires_at_ms(view: TicketView, retention_ms: int) -> int | None:
    """When a ticket's state may be dropped: `retention_ms` after the newest event of a
    closed ticket, or of a ticket whose ticket.created never came. None while it lives.

    Until then its event ids deduplicate re-deliveries: the retention is the dedupe
    horizon. It must exceed the longest window plus the grace period, so that the windows
    of a partition can be rebuilt from its tickets (settings check this).
    """
    if view.newest_ms is None:
        return None
    if view.created_at_ms is None or view.status == "closed":
        return view.newest_ms + retention_ms
    return None


def is_first_response(event: Event) -> bool:
    """A public reply written by an agent: not the customer, not a note, not automation."""
    return (
        event.type == "ticket.replied"
        and event.get("author") == "agent"
        and event.get("public") is True
    )
