"""The customer window oracle: O7 conversion_after_contact, O8 customer_retention and
H8 complaint_growth, from docs/kpis.md ("Time and windows", "Customers: joins of the two
streams") and ../shared/KPIS.md, ../shared/EVENTS.md alone.

It shares no code with the streaming customer core (stream/kpi/customers.py,
stream/customer_flow.py, stream/kpi/customer_catalogue.py), so that a bug there cannot
hide in the reference. It takes every event of both streams at once, drops repeated
event ids, turns the events into each customer's activities and answers each KPI by
looking at the whole history. It knows the end of every story (every conversion period
has run out), so it computes what the *final* messages must say;
`assert_customer_windows_match` compares only those.

Readings of the spec that the oracle fixes (each is a choice where the text allows two):

- O7, "a period open at c (one that started before c and ends after it)": activities
  are taken in time order, ties by event_id, and a contact opens a period unless a
  period opened by an earlier contact in that order ends after c. So a second contact
  at the same millisecond opens nothing, and a contact at exactly the end c0 + 7 d of
  the open period opens the next one.
- H8, "customers active at its end": a window is [start, end), so its end is its last
  moment: a customer is active at the end of a window when they placed an order at a
  time in [end - 30 d, end). An order at exactly `end` belongs to the next window; an
  order at `end - 30 d` (active over [end - 30 d, end)) still counts.
- H8, "windows with a ticket or a change in active customers": "active customers" is the
  window's value (the number active at its end), so a change is a window whose
  active_customers differs from that of the window one size earlier (whether that one
  has a message or not). A window where one customer goes and another comes, or where a
  customer stops being active and orders again, has no message for it: the number did
  not change. (The other reading, any customer becoming active or inactive within the
  window, is not the doc's vocabulary: it names no such event.)
- H8, "the previous window of the same size": the window starting one size earlier; when
  that window has no complaint_growth message, every "against the previous" value is null.
- H8 with the external `customer_count` indicator as the base is out of the oracle's
  scope: it takes no indicators, so `external_customer_count` is always 0.
- O8: a customer_retention message for each retention window with a base (a customer
  with an order in the window before); nothing for a window without one.

Window sizes: O7 and H8 are computed for every size of `sizes_ms` and the retention size
(the worker's customer windows are KPI_WINDOWS plus the retention window), deduplicated;
O8 for the retention size only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stream.kpi.timefmt import parse_rfc3339_ms
from tests.oracle_windows import WindowKey, describe, message_key, window_start

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

CUSTOMER_KPIS = ("conversion_after_contact", "customer_retention", "complaint_growth")
ALL: tuple[tuple[str, str], ...] = ()

# What each event type becomes on the customer topic (docs/kpis.md, "Customers").
ACTIVITY_OF_TYPE = {
    "ticket.created": "ticket",
    "customer.contacted": "contact",
    "order.placed": "order",
}
SUPPORT_CONTACTS = frozenset({"ticket", "contact"})


@dataclass(frozen=True)
class Activity:
    """One activity of a customer: its kind, time and the id of its event."""

    kind: str  # ticket, contact or order
    t: int
    event_id: str
    complaint: bool = False  # a ticket whose subject_kind is "complaint"


def customer_activities(
    helpdesk_events: Iterable[dict[str, Any]], order_events: Iterable[dict[str, Any]]
) -> dict[str, list[Activity]]:
    """Each customer's activities in time order (ties by event_id). An event id seen
    before (on either stream) is a duplicate and is counted once, the first one."""
    seen: set[str] = set()
    by_customer: dict[str, list[Activity]] = defaultdict(list)
    for event in [*helpdesk_events, *order_events]:
        kind = ACTIVITY_OF_TYPE.get(event.get("type", ""))
        if kind is None or event["event_id"] in seen or "customer_id" not in event:
            continue
        seen.add(event["event_id"])
        complaint = kind == "ticket" and event.get("subject_kind") == "complaint"
        by_customer[event["customer_id"]].append(
            Activity(kind, int(event["t"]), event["event_id"], complaint)
        )
    for activities in by_customer.values():
        activities.sort(key=lambda a: (a.t, a.event_id))
    return dict(by_customer)


# --------------------------------------------------------------------------------------
# O7 conversion after contact


def conversion_periods(activities: list[Activity], conversion_ms: int) -> list[tuple[int, bool]]:
    """One customer's conversion periods as (end, converted): a support contact at c
    opens (c, c + conversion] unless the period opened before it (in time order, ties
    by event_id) ends after c; converted when an order falls in (c, c + conversion]."""
    orders = [a.t for a in activities if a.kind == "order"]
    periods: list[tuple[int, bool]] = []
    open_until: int | None = None
    for activity in activities:
        if activity.kind not in SUPPORT_CONTACTS:
            continue
        c = activity.t
        if open_until is not None and open_until > c:
            continue  # within the open period: opens nothing
        end = c + conversion_ms
        open_until = end
        periods.append((end, any(c < t <= end for t in orders)))
    return periods


def _conversion_windows(
    customers: dict[str, list[Activity]], sizes_ms: tuple[int, ...], conversion_ms: int
) -> dict[WindowKey, dict[str, Any]]:
    counts: dict[WindowKey, list[int]] = defaultdict(lambda: [0, 0])
    for activities in customers.values():
        for end, converted in conversion_periods(activities, conversion_ms):
            for size in sizes_ms:
                cell = counts[("conversion_after_contact", size, window_start(end, size), ALL)]
                cell[0] += 1
                cell[1] += int(converted)
    return {
        key: {"contacted": contacted, "converted": converted, "rate": converted / contacted}
        for key, (contacted, converted) in counts.items()
    }


# --------------------------------------------------------------------------------------
# O8 customer retention


def _retention_windows(
    customers: dict[str, list[Activity]], retention_ms: int
) -> dict[WindowKey, dict[str, Any]]:
    """Base of window k + 1: customers with an order in k; retained: those of them
    with an order in k + 1 too. A message where the base is not empty."""
    base: dict[int, int] = defaultdict(int)
    retained: dict[int, int] = defaultdict(int)
    for activities in customers.values():
        ordered_in = {a.t // retention_ms for a in activities if a.kind == "order"}
        for k in ordered_in:
            base[k + 1] += 1
            if k + 1 in ordered_in:
                retained[k + 1] += 1
    windows = {}
    for k, count in base.items():
        key = ("customer_retention", retention_ms, k * retention_ms, ALL)
        windows[key] = {"base": count, "retained": retained[k], "rate": retained[k] / count}
    return windows


# --------------------------------------------------------------------------------------
# H8 complaint growth against customer growth


def active_periods(activities: list[Activity], active_ms: int) -> list[tuple[int, int]]:
    """One customer's active periods [start, end): the union of [t, t + active) over
    their orders, overlapping and touching periods joined."""
    joined: list[list[int]] = []
    for t in sorted(a.t for a in activities if a.kind == "order"):
        if joined and t <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], t + active_ms)
        else:
            joined.append([t, t + active_ms])
    return [(start, end) for start, end in joined]


def active_at_end(activities: list[Activity], end_ms: int, active_ms: int) -> bool:
    """Active at the end of a window ending (exclusive) at end_ms: an order in
    [end - active, end), i.e. active at the window's last millisecond."""
    return any(a.kind == "order" and end_ms - active_ms <= a.t < end_ms for a in activities)


def _per_1000(count: int, active: int) -> float | None:
    return 1000.0 * count / active if active else None


def _growth(now: int, previous: int | None) -> float | None:
    """now / previous - 1; null without a previous value or when it is 0."""
    if previous is None or previous == 0:
        return None
    return now / previous - 1


def _complaint_windows(
    customers: dict[str, list[Activity]], sizes_ms: tuple[int, ...], active_ms: int
) -> dict[WindowKey, dict[str, Any]]:
    # The number of active customers can only change in a window holding the start or
    # the end of somebody's active period.
    periods = {c: active_periods(acts, active_ms) for c, acts in customers.items()}
    changes = sorted({t for spans in periods.values() for span in spans for t in span})
    tickets = [a for acts in customers.values() for a in acts if a.kind == "ticket"]
    windows: dict[WindowKey, dict[str, Any]] = {}
    for size in sizes_ms:
        starts = {window_start(t, size) for t in changes}
        starts |= {window_start(a.t, size) for a in tickets}
        for start in sorted(starts):
            end = start + size
            in_window = [a for a in tickets if start <= a.t < end]
            count = len(in_window)
            complaints = sum(a.complaint for a in in_window)
            active = sum(active_at_end(acts, end, active_ms) for acts in customers.values())
            before = sum(active_at_end(acts, start, active_ms) for acts in customers.values())
            if not in_window and active == before:
                continue  # no ticket, no change in active customers: nothing to say
            values: dict[str, Any] = {
                "tickets": count,
                "complaints": complaints,
                "active_customers": active,
                "tickets_per_1000": _per_1000(count, active),
                "complaints_per_1000": _per_1000(complaints, active),
            }
            previous = windows.get(("complaint_growth", size, start - size, ALL))
            if previous is None:
                change = complaint_growth = customer_growth = None
            else:
                now_rate, then_rate = values["complaints_per_1000"], previous["complaints_per_1000"]
                change = (
                    now_rate - then_rate if now_rate is not None and then_rate is not None else None
                )
                complaint_growth = _growth(complaints, previous["complaints"])
                customer_growth = _growth(active, previous["active_customers"])
            values["complaints_per_1000_change"] = change
            values["complaint_growth"] = complaint_growth
            values["customer_growth"] = customer_growth
            values["complaints_outgrow_customers"] = (
                None
                if complaint_growth is None or customer_growth is None
                else int(complaint_growth > customer_growth)
            )
            # The base is always the customers with a recent order: the oracle takes no
            # external customer_count indicator.
            values["external_customer_count"] = 0
            windows[("complaint_growth", size, start, ALL)] = values
    return windows


# --------------------------------------------------------------------------------------
# All three


def customer_sizes(sizes_ms: Iterable[int], retention_ms: int) -> tuple[int, ...]:
    """The sizes of O7 and H8: the configured ones and the retention size, once each."""
    return tuple(sorted({*sizes_ms, retention_ms}))


def compute_customer_windows(
    helpdesk_events: list[dict[str, Any]],
    order_events: list[dict[str, Any]],
    sizes_ms: tuple[int, ...],
    *,
    retention_ms: int = 30 * DAY_MS,
    active_ms: int = 30 * DAY_MS,
    conversion_ms: int = 7 * DAY_MS,
) -> dict[WindowKey, dict[str, Any]]:
    """Every O7/O8/H8 window message the spec says is emitted, keyed (kpi, size_ms,
    start_ms, ()) (all values are in the dimension set {}).

    `helpdesk_events` and `order_events`: the events' JSON fields plus `t` (occurred_at
    in epoch ms), in any order, duplicates included (the first of an event_id counts).
    conversion_after_contact and complaint_growth come for every size of `sizes_ms` and
    for `retention_ms` (deduplicated), as the worker's customer windows are KPI_WINDOWS
    plus the retention window; customer_retention for `retention_ms` only.
    """
    customers = customer_activities(helpdesk_events, order_events)
    sizes = customer_sizes(sizes_ms, retention_ms)
    windows = {
        **_conversion_windows(customers, sizes, conversion_ms),
        **_retention_windows(customers, retention_ms),
        **_complaint_windows(customers, sizes, active_ms),
    }
    return dict(sorted(windows.items()))


# --------------------------------------------------------------------------------------
# Comparing the KPI topic with the oracle


def _value_matches(got: Any, want: Any, relative_accuracy: float) -> bool:
    """Counts exactly (JSON integers), ratios with math.isclose; null as null."""
    if want is None:
        return got is None
    if got is None or isinstance(got, bool) or not isinstance(got, int | float):
        return False
    if isinstance(want, int):
        return isinstance(got, int) and got == want
    return math.isclose(got, want, rel_tol=relative_accuracy, abs_tol=1e-9)


def assert_customer_windows_match(
    messages: list[dict[str, Any]],
    expected: dict[WindowKey, dict[str, Any]],
    final_through_ms: int,
    relative_accuracy: float = 1e-9,
) -> int:
    """The final O7/O8/H8 kpi.windows.v1 messages say what the oracle computed.

    Only `is_final` messages of the three KPIs are compared. Every one must have an
    expected key, the right window_end and matching values (each one, if a final is
    repeated); every expected window ending at or before `final_through_ms` must have a
    final message. The error lists the problems, earliest key first. Returns the number
    of windows compared.
    """
    finals = [
        message
        for message in messages
        if message.get("is_final") is True and message.get("kpi") in CUSTOMER_KPIS
    ]
    problems: list[tuple[WindowKey, str]] = []
    seen: set[WindowKey] = set()
    for message in finals:
        key = message_key(message)
        label = describe(key)
        got = message.get("values") or {}
        if key not in expected:
            problems.append((key, f"{label}: final message the oracle does not expect {got!r}"))
            continue
        seen.add(key)
        if parse_rfc3339_ms(message["window_end"]) != key[2] + key[1]:
            problems.append((key, f"{label}: window_end {message['window_end']} is not start+size"))
        for name, want in expected[key].items():
            if name not in got:
                problems.append((key, f"{label}: value {name!r} missing (oracle {want!r})"))
            elif not _value_matches(got[name], want, relative_accuracy):
                problems.append((key, f"{label}: {name} is {got[name]!r}, oracle {want!r}"))
    due = [key for key in expected if key[2] + key[1] <= final_through_ms]
    for key in due:
        if key not in seen:
            problems.append((key, f"{describe(key)}: no final message (oracle {expected[key]!r})"))
    if problems:
        problems.sort(key=lambda item: item[0])
        shown = "\n".join(f"  {text}" for _, text in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise AssertionError(
            f"customer kpi.windows.v1 differs from the oracle: {len(problems)} problem(s); "
            f"{len(finals)} final messages, {len(seen)} windows compared, "
            f"{len(due)} expected windows final by {final_through_ms}\n{shown}{more}"
        )
    return len(seen)
