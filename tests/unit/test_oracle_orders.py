"""The order oracle (tests/oracle_orders.py) on small histories computed by hand from
docs/kpis.md (O1-O6), so that the property test compares the stream with a reference
that is itself checked."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from stream.kpi.timefmt import format_rfc3339_ms
from tests.oracle_orders import (
    assert_order_windows_match,
    compute_order_windows,
)
from tests.oracle_windows import WindowKey

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
TEN_MINUTES = 10 * MINUTE
SIZES = (TEN_MINUTES, HOUR, DAY)
# A 10-minute window boundary (2026-11-24T10:20:00Z), so tests can straddle it.
W = 1_795_515_600_000
P = W - 5 * MINUTE  # a placement in the middle of the window before W
WEB: tuple[tuple[str, str], ...] = (("channel", "web"),)
ALL: tuple[tuple[str, str], ...] = ()

_ids = itertools.count(1)


def ev(type_: str, at_ms: int, order: str = "O1", **fields: Any) -> dict[str, Any]:
    event_id = fields.pop("event_id", None) or f"e-{next(_ids):04d}"
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": format_rfc3339_ms(at_ms),
        "schema_version": 1,
        "order_id": order,
        "customer_id": "c-1",
        "t": at_ms,
        **fields,
    }


def placed(at_ms: int = P, channel: str = "web", order: str = "O1", **f: Any) -> dict[str, Any]:
    return ev("order.placed", at_ms, order, channel=channel, **f)


def confirmed(at_ms: int, clicks: int = 1, order: str = "O1", **f: Any) -> dict[str, Any]:
    return ev("order.confirmed", at_ms, order, clicks=clicks, **f)


def notice(at_ms: int, kind: str, order: str = "O1", **f: Any) -> dict[str, Any]:
    return ev("notification.sent", at_ms, order, kind=kind, medium="email", **f)


def key(
    kpi: str, at_ms: int, dims: tuple[tuple[str, str], ...] = ALL, size: int = TEN_MINUTES
) -> WindowKey:
    return (kpi, size, at_ms // size * size, dims)


def of(windows: dict[WindowKey, dict[str, Any]], kpi: str) -> dict[WindowKey, dict[str, Any]]:
    return {k: v for k, v in windows.items() if k[0] == kpi}


def test_confirmation_at_59_seconds_is_met_at_c() -> None:
    c = P + 59 * SECOND
    windows = compute_order_windows([placed(), confirmed(c, clicks=1)], SIZES)
    for dims in (WEB, ALL):
        assert windows[key("order_confirmation_sla", c, dims)] == {
            "met": 1,
            "missed": 0,
            "total": 1,
            "attainment": 1.0,
        }
        latency = windows[key("order_confirmation_time", c, dims)]
        assert latency["count"] == 1
        assert latency["sum_seconds"] == 59.0
        assert latency["p50_seconds"] == latency["p99_seconds"] == 59.0
    assert windows[key("orders", P, WEB)] == {
        "placed": 1,
        "cancelled": 0,
        "shipped": 0,
        "delayed": 0,
        "delivered": 0,
    }
    # Every window size holds it.
    assert key("order_confirmation_sla", c, WEB, size=DAY) in windows


def test_confirmation_at_exactly_60_seconds_is_met() -> None:
    c = P + 60 * SECOND
    windows = compute_order_windows([placed(), confirmed(c)], SIZES)
    assert windows[key("order_confirmation_sla", c)]["met"] == 1


def test_confirmation_at_61_seconds_is_missed_at_p_plus_60() -> None:
    p = W - 60 * SECOND - 500  # P + 60 s falls just before W, C = P + 61 s just after
    c = p + 61 * SECOND
    windows = compute_order_windows([placed(p), confirmed(c)], SIZES)
    sla = of(windows, "order_confirmation_sla")
    assert sla[key("order_confirmation_sla", p + 60 * SECOND)] == {
        "met": 0,
        "missed": 1,
        "total": 1,
        "attainment": 0.0,
    }
    assert key("order_confirmation_sla", c) not in sla  # not when the confirmation comes
    assert windows[key("order_confirmation_time", c)]["sum_seconds"] == 61.0  # O1 at C


def test_never_confirmed_is_missed_at_p_plus_60() -> None:
    windows = compute_order_windows([placed()], SIZES)
    assert windows[key("order_confirmation_sla", P + MINUTE, WEB)]["missed"] == 1
    assert not of(windows, "order_confirmation_time")
    assert not of(windows, "one_click_confirmation")


def test_cancelled_at_30_seconds_without_confirmation_has_no_o2_result() -> None:
    x = P + 30 * SECOND
    windows = compute_order_windows([placed(), ev("order.cancelled", x)], SIZES)
    assert not of(windows, "order_confirmation_sla")
    assert windows[key("orders", x, WEB)]["cancelled"] == 1


def test_cancelled_at_60_seconds_and_confirmed_later_has_no_o2_result() -> None:
    events = [placed(), ev("order.cancelled", P + MINUTE), confirmed(P + 2 * MINUTE)]
    assert not of(compute_order_windows(events, SIZES), "order_confirmation_sla")


def test_cancelled_after_the_target_is_still_missed() -> None:
    events = [placed(), ev("order.cancelled", P + MINUTE + 1)]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("order_confirmation_sla", P + MINUTE)]["missed"] == 1


def test_confirmed_then_cancelled_is_met() -> None:
    events = [placed(), confirmed(P + 10 * SECOND), ev("order.cancelled", P + 20 * SECOND)]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("order_confirmation_sla", P + 10 * SECOND)]["met"] == 1


def test_clicks_0_and_1_are_one_click_on_web_2_is_not() -> None:
    events = [
        placed(order="A"),
        confirmed(P + SECOND, clicks=0, order="A"),
        placed(order="B"),
        confirmed(P + SECOND, clicks=1, order="B"),
        placed(order="C"),
        confirmed(P + SECOND, clicks=2, order="C"),
        # Only the first confirmation counts.
        confirmed(P + 2 * SECOND, clicks=0, order="C"),
    ]
    windows = compute_order_windows(events, SIZES)
    for dims in (WEB, ALL):
        assert windows[key("one_click_confirmation", P + SECOND, dims)] == {
            "confirmed": 3,
            "one_click": 2,
            "rate": pytest.approx(2 / 3),
        }


def test_phone_and_store_orders_have_no_o3_but_o1_and_o2() -> None:
    events = [
        placed(channel="phone", order="A"),
        confirmed(P + SECOND, clicks=1, order="A"),
        placed(channel="store", order="B"),
        confirmed(P + SECOND, clicks=0, order="B"),
        placed(channel="app", order="C"),
        confirmed(P + SECOND, clicks=3, order="C"),
    ]
    windows = compute_order_windows(events, SIZES)
    assert set(of(windows, "one_click_confirmation")) == {
        key("one_click_confirmation", P + SECOND, (("channel", "app"),), size) for size in SIZES
    } | {key("one_click_confirmation", P + SECOND, ALL, size) for size in SIZES}
    assert windows[key("one_click_confirmation", P + SECOND)] == {
        "confirmed": 1,
        "one_click": 0,
        "rate": 0.0,
    }
    assert windows[key("order_confirmation_time", P + SECOND)]["count"] == 3
    assert windows[key("order_confirmation_sla", P + SECOND, (("channel", "phone"),))]["met"] == 1


def test_shipment_notice_14_minutes_after_shipment_is_notified_at_n() -> None:
    s = P + HOUR
    n = s + 14 * MINUTE
    windows = compute_order_windows([placed(), ev("order.shipped", s), notice(n, "shipped")], SIZES)
    assert windows[key("shipment_notice", n, WEB)] == {
        "notified": 1,
        "missed": 0,
        "total": 1,
        "rate": 1.0,
    }
    assert windows[key("orders", s)]["shipped"] == 1


def test_shipment_notice_at_15_minutes_is_notified_16_is_missed_at_deadline() -> None:
    s = W - 15 * MINUTE - 30 * SECOND  # S + 15 min just before W, S + 16 min after it
    on_time = compute_order_windows(
        [placed(s - HOUR), ev("order.shipped", s), notice(s + 15 * MINUTE, "shipped")], SIZES
    )
    assert on_time[key("shipment_notice", s + 15 * MINUTE)]["notified"] == 1
    late = compute_order_windows(
        [placed(s - HOUR), ev("order.shipped", s), notice(s + 16 * MINUTE, "shipped")], SIZES
    )
    assert set(of(late, "shipment_notice")) == {
        key("shipment_notice", s + 15 * MINUTE, dims, size) for dims in (WEB, ALL) for size in SIZES
    }
    assert late[key("shipment_notice", s + 15 * MINUTE)]["missed"] == 1


def test_shipment_notice_before_the_shipment_or_of_another_kind_does_not_count() -> None:
    s = P + HOUR
    events = [
        placed(),
        notice(s - SECOND, "shipped"),
        notice(s + MINUTE, "delayed"),
        notice(s + 2 * MINUTE, "confirmation"),
        ev("order.shipped", s),
    ]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("shipment_notice", s + 15 * MINUTE)] == {
        "notified": 0,
        "missed": 1,
        "total": 1,
        "rate": 0.0,
    }


def test_shipment_notice_of_the_same_millisecond_counts_whatever_its_id() -> None:
    s = P + HOUR
    events = [
        placed(),
        ev("order.shipped", s, event_id="z-ship"),
        notice(s, "shipped", event_id="a-notice"),  # ordered before S, but at S
    ]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("shipment_notice", s)]["notified"] == 1


def test_delay_then_contact_then_notice_is_contact_first() -> None:
    d = P + HOUR
    contact = d + 5 * MINUTE
    events = [
        placed(),
        ev("order.delayed", d),
        ev("customer.contacted", contact, ticket_id="T-9"),
        notice(d + 20 * MINUTE, "delayed"),
    ]
    windows = compute_order_windows(events, SIZES)
    assert of(windows, "delay_notice") == {
        key("delay_notice", contact, dims, size): {
            "told_first": 0,
            "contact_first": 1,
            "not_told": 0,
            "total": 1,
            "rate": 0.0,
        }
        for dims in (WEB, ALL)
        for size in SIZES
    }
    assert windows[key("orders", d)]["delayed"] == 1


def test_delay_notice_first_is_told_first_and_delivery_first_is_not_told() -> None:
    d = P + HOUR
    told = compute_order_windows(
        [
            placed(),
            ev("order.delayed", d),
            notice(d + MINUTE, "delayed"),
            ev("customer.contacted", d + 2 * MINUTE),
        ],
        SIZES,
    )
    assert told[key("delay_notice", d + MINUTE)]["told_first"] == 1
    assert told[key("delay_notice", d + MINUTE)]["rate"] == 1.0
    not_told = compute_order_windows(
        [placed(), ev("order.delayed", d), ev("order.delivered", d + MINUTE)], SIZES
    )
    assert not_told[key("delay_notice", d + MINUTE)]["not_told"] == 1
    cancelled = compute_order_windows(
        [placed(), ev("order.delayed", d), ev("order.cancelled", d + MINUTE)], SIZES
    )
    assert cancelled[key("delay_notice", d + MINUTE)]["not_told"] == 1


def test_delay_notice_needs_a_deciding_event_ordered_after_d() -> None:
    d = P + HOUR
    events = [
        placed(),
        ev("customer.contacted", d - MINUTE),  # before D: decides nothing
        ev("order.delayed", d, event_id="m-delay"),
        notice(d, "delayed", event_id="a-notice"),  # same ms, ordered before D by id
        notice(d + MINUTE, "shipped"),  # another kind: decides nothing
    ]
    assert not of(compute_order_windows(events, SIZES), "delay_notice")
    later = [*events, notice(d, "delayed", event_id="z-notice")]  # same ms, after D
    assert compute_order_windows(later, SIZES)[key("delay_notice", d)]["told_first"] == 1


def test_delivery_after_promised_by_is_not_on_time() -> None:
    s = P + HOUR
    promise = s + 2 * HOUR
    events = [
        placed(),
        ev("order.shipped", s, promised_by=format_rfc3339_ms(promise)),
        ev("order.delayed", s + HOUR, new_promised_by=format_rfc3339_ms(promise + DAY)),
        ev("order.delivered", promise + 1),
    ]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("on_time_delivery", promise + 1, WEB)] == {
        "delivered": 1,
        "on_time": 0,
        "rate": 0.0,
    }
    assert windows[key("orders", promise + 1)]["delivered"] == 1


def test_delivery_at_promised_by_is_on_time() -> None:
    s = P + HOUR
    promise = s + 2 * HOUR
    events = [
        placed(),
        ev("order.shipped", s, promised_by=format_rfc3339_ms(promise)),
        ev("order.delivered", promise),
    ]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("on_time_delivery", promise)] == {"delivered": 1, "on_time": 1, "rate": 1.0}


def test_on_time_delivery_needs_a_promise_on_the_first_shipment() -> None:
    s = P + HOUR
    events = [
        placed(),
        ev("order.shipped", s),
        ev("order.shipped", s + MINUTE, promised_by=format_rfc3339_ms(s + DAY)),
        ev("order.delivered", s + HOUR),
    ]
    windows = compute_order_windows(events, SIZES)
    assert not of(windows, "on_time_delivery")
    assert windows[key("orders", s)]["shipped"] == 1  # the first shipment only
    assert windows[key("orders", s + HOUR)]["delivered"] == 1


def test_events_stamped_before_the_placement_are_ignored() -> None:
    events = [
        confirmed(P - SECOND, clicks=0),
        ev("order.cancelled", P - SECOND),
        ev("order.shipped", P - MINUTE, promised_by=format_rfc3339_ms(P + DAY)),
        ev("order.delayed", P - MINUTE),
        ev("order.delivered", P - SECOND),
        placed(),
    ]
    windows = compute_order_windows(events, SIZES)
    assert set(k[0] for k in windows) == {"orders", "order_confirmation_sla"}
    assert windows[key("orders", P)] == {
        "placed": 1,
        "cancelled": 0,
        "shipped": 0,
        "delayed": 0,
        "delivered": 0,
    }
    assert windows[key("order_confirmation_sla", P + MINUTE)]["missed"] == 1


def test_an_event_of_the_placement_millisecond_counts() -> None:
    events = [confirmed(P, clicks=1, event_id="a-first"), placed(event_id="z-last")]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("order_confirmation_time", P)]["sum_seconds"] == 0.0
    assert windows[key("order_confirmation_sla", P)]["met"] == 1


def test_the_first_placement_sets_p_and_the_channel() -> None:
    events = [
        placed(P, channel="app"),
        placed(P + 10 * SECOND, channel="web"),  # a second placement changes nothing
        confirmed(P + 30 * SECOND, clicks=2),
    ]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("orders", P)]["placed"] == 1
    assert key("orders", P, WEB) not in windows
    assert (
        windows[key("order_confirmation_time", P + 30 * SECOND, (("channel", "app"),))][
            "sum_seconds"
        ]
        == 30.0
    )


def test_order_without_placement_counts_nowhere() -> None:
    events = [confirmed(P, order="X"), ev("order.shipped", P, order="X")]
    assert compute_order_windows(events, SIZES) == {}


def test_duplicates_count_once() -> None:
    placement = placed()
    confirmation = confirmed(P + 10 * SECOND)
    events = [placement, confirmation, dict(confirmation), dict(placement)]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("orders", P)]["placed"] == 1
    assert windows[key("order_confirmation_time", P + 10 * SECOND)]["count"] == 1
    assert windows[key("one_click_confirmation", P + 10 * SECOND)]["confirmed"] == 1


def test_percentiles_are_rank_values_over_orders() -> None:
    events = []
    for i, seconds in enumerate([1, 2, 3, 4, 100]):
        events += [placed(order=f"O{i}"), confirmed(P + seconds * SECOND, order=f"O{i}")]
    windows = compute_order_windows(events, (DAY,))
    latency = windows[key("order_confirmation_time", P, ALL, DAY)]
    assert latency["count"] == 5
    assert latency["sum_seconds"] == 110.0
    assert (latency["p50_seconds"], latency["p90_seconds"], latency["p99_seconds"]) == (3, 4, 4)


def _message(k: WindowKey, values: dict[str, Any], *, final: bool = True) -> dict[str, Any]:
    kpi, size, start, dims = k
    return {
        "kpi": kpi,
        "window": "10m" if size == TEN_MINUTES else "1h" if size == HOUR else "1d",
        "window_start": format_rfc3339_ms(start),
        "window_end": format_rfc3339_ms(start + size),
        "dimensions": dict(dims),
        "values": values,
        "is_final": final,
        "revision": 1,
    }


def test_assert_order_windows_match() -> None:
    events = [placed(), confirmed(P + 10 * SECOND, clicks=0)]
    expected = compute_order_windows(events, SIZES)
    messages = [
        _message(k, {n: v for n, v in values.items() if not n.startswith("_")})
        for k, values in expected.items()
    ]
    end = max(k[2] + k[1] for k in expected)
    assert_order_windows_match(messages, expected, end)
    # A percentile within 1 % passes; a count that differs does not.
    latency = next(m for m in messages if m["kpi"] == "order_confirmation_time")
    latency["values"] = {**latency["values"], "p90_seconds": 10.05}
    assert_order_windows_match(messages, expected, end)
    latency["values"] = {**latency["values"], "count": 2}
    with pytest.raises(AssertionError, match="count is 2"):
        assert_order_windows_match(messages, expected, end)
    latency["values"] = {**latency["values"], "count": 1, "p50_seconds": 11.0}
    with pytest.raises(AssertionError, match="p50_seconds"):
        assert_order_windows_match(messages, expected, end)
    # A missing final, unless its window ends after final_through.
    with pytest.raises(AssertionError, match="no final message"):
        assert_order_windows_match(messages[1:], expected, end)
    assert_order_windows_match([], expected, P - TEN_MINUTES)
    # Non-final messages are not compared; an unexpected final is a problem.
    stray = _message(key("delay_notice", P), {"told_first": 1})
    assert_order_windows_match([{**stray, "is_final": False}], expected, 0)
    with pytest.raises(AssertionError, match="does not expect"):
        assert_order_windows_match([stray], expected, 0)


def test_a_shipment_stamped_after_the_delivery_still_gives_its_promise() -> None:
    v = P + HOUR
    events = [
        placed(),
        ev("order.delivered", v),
        ev("order.shipped", v + MINUTE, promised_by=format_rfc3339_ms(v - 1)),
    ]
    windows = compute_order_windows(events, SIZES)
    assert windows[key("on_time_delivery", v)] == {"delivered": 1, "on_time": 0, "rate": 0.0}
