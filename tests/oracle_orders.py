"""The order window oracle: every order `kpi.windows.v1` value (O1-O6), from docs/kpis.md.

Written from docs/kpis.md ("Time and windows", "Orders: the order of events ...",
O1-O6) and ../shared/EVENTS.md alone: it shares no code with the streaming order core
(stream/kpi/orders.py, stream/order_flow.py, stream/kpi/order_catalogue.py), so that a
bug there cannot hide in the reference. It takes every event at once, drops repeated
event ids, orders each order's events as the spec says and answers each KPI by looking
at the whole history. The oracle knows the end of every story, so every timer (O2's
P + 60 s, O4's S + 15 min) has run out: it computes what the *final* messages must say,
and `assert_order_windows_match` compares only those.

Readable over clever: each KPI is a few lines over one order's history, in the spec's words.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.timefmt import parse_rfc3339_ms
from tests.oracle_windows import (
    WindowKey,
    describe,
    is_percentile,
    message_key,
    public_values,
    rank_value,
    unique_events,
    window_start,
)

Dims = tuple[tuple[str, str], ...]

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
# O2: confirmed within a minute of the placement.
CONFIRMATION_TARGET_MS = 60 * SECOND_MS
# O4: the shipment notice within 15 minutes of the shipment.
SHIPMENT_NOTICE_TARGET_MS = 15 * MINUTE_MS
# O3: the channels where the customer confirms by clicking.
CLICK_CHANNELS = frozenset({"web", "app"})
# The types of orders.events (EVENTS.md).
ORDER_EVENT_TYPES = frozenset(
    {
        "order.placed",
        "order.confirmed",
        "order.shipped",
        "order.delayed",
        "order.delivered",
        "order.cancelled",
        "notification.sent",
        "customer.contacted",
    }
)
# O5: the events that decide a delay notice, and the result each one gives.
DELAY_DECIDERS = {
    "notification.sent": "told_first",  # only with kind = "delayed", see _delay_result
    "customer.contacted": "contact_first",
    "order.delivered": "not_told",
    "order.cancelled": "not_told",
}
ORDER_KPIS = (
    "orders",
    "order_confirmation_time",
    "order_confirmation_sla",
    "one_click_confirmation",
    "shipment_notice",
    "delay_notice",
    "on_time_delivery",
)


# --------------------------------------------------------------------------------------
# One order's history


def order_event_key(event: dict[str, Any]) -> tuple[int, int, str]:
    """The spec's order of an order's events: occurred_at, then order.placed first, then
    event_id. It makes every KPI a function of the set of events, not of arrival."""
    return (event["t"], 0 if event["type"] == "order.placed" else 1, event["event_id"])


class OrderHistory:
    """One placed order: its placement (the first order.placed, at P, with its channel)
    and the events ordered after it, the only ones that count. A second placement and
    every event ordered before the first one count nowhere."""

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        ordered = sorted(events, key=order_event_key)
        first = next(i for i, event in enumerate(ordered) if event["type"] == "order.placed")
        placement = ordered[first]
        self.placed_at: int = placement["t"]
        self.channel: str = placement["channel"]
        # Only events ordered after the placement count: `after` is that tail, in order.
        self.after: list[dict[str, Any]] = ordered[first + 1 :]

    def first(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        since: int = 0,
    ) -> int | None:
        """The index in `after` of the first event of a type (from index `since` on,
        and satisfying `where`), or None."""
        for index in range(since, len(self.after)):
            event = self.after[index]
            if event["type"] == kind and (where is None or where(event)):
                return index
        return None

    def at(self, index: int) -> int:
        return int(self.after[index]["t"])


# --------------------------------------------------------------------------------------
# Collecting contributions per window


@dataclass
class _Cell:
    """What one (kpi, size, start, dims) window has collected before it is formatted."""

    counts: Counter[str] = field(default_factory=Counter)
    samples: list[float] = field(default_factory=list)


class _Collector:
    """Adds each contribution to the window of every size holding its time, once per
    dimension set. A cell exists only when something was added: then a message is due."""

    def __init__(self, sizes_ms: tuple[int, ...]) -> None:
        self.sizes_ms = sizes_ms
        self.cells: dict[WindowKey, _Cell] = defaultdict(_Cell)

    def add(
        self,
        kpi: str,
        time_ms: int,
        dims_sets: list[Dims],
        *,
        counts: dict[str, int] | None = None,
        sample: float | None = None,
    ) -> None:
        for size_ms in self.sizes_ms:
            start = window_start(time_ms, size_ms)
            for dims in dims_sets:
                cell = self.cells[(kpi, size_ms, start, dims)]
                cell.counts.update(counts or {})
                if sample is not None:
                    cell.samples.append(sample)


def channel_dims(channel: str) -> list[Dims]:
    """The two dimension sets of the order KPIs: {channel} and {} (every order)."""
    return [(("channel", channel),), ()]


def _is_shipment_notice(event: dict[str, Any]) -> bool:
    return event.get("kind") == "shipped"


def _delay_result(event: dict[str, Any]) -> str | None:
    """O5: what an event ordered after D decides, or None when it decides nothing."""
    kind = event["type"]
    if kind == "notification.sent" and event.get("kind") != "delayed":
        return None
    return DELAY_DECIDERS.get(kind)


def _collect_order(history: OrderHistory, collector: _Collector) -> None:
    """Every window contribution of one placed order, KPI by KPI as in docs/kpis.md."""
    placed = history.placed_at
    dims = channel_dims(history.channel)
    at = history.at

    def add(kpi: str, time_ms: int, **counts: int) -> None:
        collector.add(kpi, time_ms, dims, counts=counts)

    confirmed = history.first("order.confirmed")
    cancelled = history.first("order.cancelled")
    shipped = history.first("order.shipped")
    delayed = history.first("order.delayed")
    delivered = history.first("order.delivered")

    # orders: the placement at P and the first of each later fact at its time.
    add("orders", placed, placed=1)
    for name, index in (
        ("cancelled", cancelled),
        ("shipped", shipped),
        ("delayed", delayed),
        ("delivered", delivered),
    ):
        if index is not None:
            add("orders", at(index), **{name: 1})

    # O1: (C - P) seconds at C.
    if confirmed is not None:
        collector.add(
            "order_confirmation_time",
            at(confirmed),
            dims,
            sample=(at(confirmed) - placed) / 1000.0,
        )

    # O2: met at C by P + 60 s; no result when cancelled by then without a confirmation;
    # otherwise missed at P + 60 s (the timer has run out: the oracle sees the end).
    target = placed + CONFIRMATION_TARGET_MS
    if confirmed is not None and at(confirmed) <= target:
        add("order_confirmation_sla", at(confirmed), met=1)
    elif cancelled is not None and at(cancelled) <= target:
        pass  # a cancelled order was not waiting
    else:
        add("order_confirmation_sla", target, missed=1)

    # O3: web and app orders with a confirmation; one-click when clicks <= 1, at C.
    if confirmed is not None and history.channel in CLICK_CHANNELS:
        clicks = int(history.after[confirmed]["clicks"])
        add("one_click_confirmation", at(confirmed), confirmed=1, one_click=int(clicks <= 1))

    # O4: N is the first shipment notice stamped at or after S; target S + 15 min.
    if shipped is not None:
        shipped_at = at(shipped)
        notice = history.first(
            "notification.sent",
            lambda event: _is_shipment_notice(event) and event["t"] >= shipped_at,
        )
        deadline = shipped_at + SHIPMENT_NOTICE_TARGET_MS
        if notice is not None and at(notice) <= deadline:
            add("shipment_notice", at(notice), notified=1)
        else:
            add("shipment_notice", deadline, missed=1)

    # O5: the first deciding event ordered after D, at its time; none yet, no result.
    if delayed is not None:
        for index in range(delayed + 1, len(history.after)):
            result = _delay_result(history.after[index])
            if result is not None:
                add("delay_notice", at(index), **{result: 1})
                break

    # O6: a delivered order whose first shipment has a promise: on time when V <= it.
    # The spec does not ask the shipment to come before the delivery (nor does the
    # oracle): a shipment stamped after V still gives V its promise. A stream can only
    # honour that while V's window is not final (the property test keeps it so).
    if delivered is not None and shipped is not None:
        promise = history.after[shipped].get("promised_by")
        if promise is not None:
            on_time = at(delivered) <= parse_rfc3339_ms(promise)
            add("on_time_delivery", at(delivered), delivered=1, on_time=int(on_time))


# --------------------------------------------------------------------------------------
# Formatting the values of a window message


def _ratio(numerator: float, denominator: float) -> float | None:
    """A ratio that is null, not 0 or an error, when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def _orders_values(cell: _Cell) -> dict[str, Any]:
    names = ("placed", "cancelled", "shipped", "delayed", "delivered")
    return {name: cell.counts[name] for name in names}


def _latency_values(cell: _Cell) -> dict[str, Any]:
    samples = sorted(cell.samples)
    return {
        "count": len(samples),
        "sum_seconds": math.fsum(samples),
        "p50_seconds": rank_value(samples, 50),
        "p90_seconds": rank_value(samples, 90),
        "p99_seconds": rank_value(samples, 99),
        "_samples": samples,
    }


def _confirmation_sla_values(cell: _Cell) -> dict[str, Any]:
    met, missed = cell.counts["met"], cell.counts["missed"]
    return {
        "met": met,
        "missed": missed,
        "total": met + missed,
        "attainment": _ratio(met, met + missed),
    }


def _one_click_values(cell: _Cell) -> dict[str, Any]:
    confirmed, one_click = cell.counts["confirmed"], cell.counts["one_click"]
    return {"confirmed": confirmed, "one_click": one_click, "rate": _ratio(one_click, confirmed)}


def _shipment_notice_values(cell: _Cell) -> dict[str, Any]:
    notified, missed = cell.counts["notified"], cell.counts["missed"]
    total = notified + missed
    return {"notified": notified, "missed": missed, "total": total, "rate": _ratio(notified, total)}


def _delay_notice_values(cell: _Cell) -> dict[str, Any]:
    counts = cell.counts
    total = counts["told_first"] + counts["contact_first"] + counts["not_told"]
    return {
        "told_first": counts["told_first"],
        "contact_first": counts["contact_first"],
        "not_told": counts["not_told"],
        "total": total,
        "rate": _ratio(counts["told_first"], total),
    }


def _on_time_values(cell: _Cell) -> dict[str, Any]:
    delivered, on_time = cell.counts["delivered"], cell.counts["on_time"]
    return {"delivered": delivered, "on_time": on_time, "rate": _ratio(on_time, delivered)}


_FORMATTERS: dict[str, Callable[[_Cell], dict[str, Any]]] = {
    "orders": _orders_values,
    "order_confirmation_time": _latency_values,
    "order_confirmation_sla": _confirmation_sla_values,
    "one_click_confirmation": _one_click_values,
    "shipment_notice": _shipment_notice_values,
    "delay_notice": _delay_notice_values,
    "on_time_delivery": _on_time_values,
}


def compute_order_windows(
    events: list[dict[str, Any]], sizes_ms: tuple[int, ...]
) -> dict[WindowKey, dict[str, Any]]:
    """Every order window message the spec says is emitted, keyed (kpi, size_ms,
    start_ms, dims), dims (("channel", c),) or () for every order.

    `events`: the events' JSON fields plus `t` (occurred_at in epoch ms), in any order,
    duplicates included (the first of an event_id counts). Other topics' events are
    ignored. Values are those of the spec's message for the KPI; `_samples` holds the
    exact sorted latencies behind the percentiles.
    """
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in unique_events(events):
        if event["type"] in ORDER_EVENT_TYPES and "order_id" in event:
            by_order[event["order_id"]].append(event)
    collector = _Collector(sizes_ms)
    for order_events in by_order.values():
        # An order whose order.placed never comes has no channel: it counts nowhere.
        if any(event["type"] == "order.placed" for event in order_events):
            _collect_order(OrderHistory(order_events), collector)
    windows = {key: _FORMATTERS[key[0]](cell) for key, cell in collector.cells.items()}
    return dict(sorted(windows.items()))


# --------------------------------------------------------------------------------------
# Comparing the KPI topic with the oracle


def _value_matches(name: str, got: Any, want: Any, relative_accuracy: float) -> bool:
    """Counts exactly (as JSON integers), percentiles within the sketch's relative
    accuracy of the exact rank value, ratios and sums with math.isclose; null as null."""
    if want is None:
        return got is None
    if got is None or isinstance(got, bool) or not isinstance(got, int | float):
        return False
    if is_percentile(name):
        return bool(abs(got - want) <= relative_accuracy * abs(want) + 1e-9)
    if isinstance(want, int):
        return isinstance(got, int) and got == want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def assert_order_windows_match(
    messages: list[dict[str, Any]],
    expected: dict[WindowKey, dict[str, Any]],
    final_through_ms: int,
    relative_accuracy: float = 0.01,
) -> None:
    """The final order kpi.windows.v1 messages say what the oracle computed.

    Only `is_final` messages of the order KPIs are compared. Every one must have an
    expected key, the right window_end and matching values (each one, if a final is
    repeated); every expected window ending at or before `final_through_ms` must have a
    final message. The error lists the problems, earliest key first.
    """
    finals = [
        message
        for message in messages
        if message.get("is_final") is True and message.get("kpi") in ORDER_KPIS
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
        for name, want in public_values(expected[key]).items():
            if name not in got:
                problems.append((key, f"{label}: value {name!r} missing (oracle {want!r})"))
            elif not _value_matches(name, got[name], want, relative_accuracy):
                problems.append((key, f"{label}: {name} is {got[name]!r}, oracle {want!r}"))
    due = [key for key in expected if key[2] + key[1] <= final_through_ms]
    for key in due:
        if key not in seen:
            values = public_values(expected[key])
            problems.append((key, f"{describe(key)}: no final message (oracle {values!r})"))
    if problems:
        problems.sort(key=lambda item: item[0])
        shown = "\n".join(f"  {text}" for _, text in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise AssertionError(
            f"order kpi.windows.v1 differs from the oracle: {len(problems)} problem(s); "
            f"{len(finals)} final messages, {len(seen)} windows compared, "
            f"{len(due)} expected windows final by {final_through_ms}\n{shown}{more}"
        )
