"""The order state (O1-O6) and the worker's order path, without a broker."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from stream.kpi.orders import CONFIRM, OrderState, add_event, derive
from stream.kpi.timefmt import format_rfc3339_ms
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from tests.scrape import by, scrape, total
from tests.unit.helpers import HOUR, MINUTE, T0, order_event


def facts(*events: Any, expired: tuple[str, ...] = ()) -> dict[str, tuple[int, float]]:
    state = OrderState("O1")
    for event in events:
        assert add_event(state, event) is None
    state.expired = list(expired)
    return {c.name: (c.at_ms - T0, c.value) for c in derive(state).contributions}


def placed(at: int = T0, channel: str = "web") -> Any:
    return order_event("order.placed", "O1", at, channel=channel)


def test_confirmation_latency_and_the_minute() -> None:
    got = facts(placed(), order_event("order.confirmed", "O1", T0 + 59_000, clicks=1))
    assert got["confirmation_seconds"] == (59_000, 59.0)
    assert got["confirm_sla:met"] == (59_000, 1)
    assert got["clicks:one"] == (59_000, 1)
    late = facts(placed(), order_event("order.confirmed", "O1", T0 + 61_000, clicks=3))
    # The miss belongs to the moment the minute ran out, not to the late confirmation.
    assert late["confirm_sla:missed"] == (60_000, 1)
    assert "clicks:one" not in late
    assert late["clicks:confirmed"] == (61_000, 1)


def test_an_unconfirmed_order_misses_only_once_its_timer_has_run_out() -> None:
    assert "confirm_sla:missed" not in facts(placed())
    assert facts(placed(), expired=(CONFIRM,))["confirm_sla:missed"] == (60_000, 1)
    cancelled = facts(placed(), order_event("order.cancelled", "O1", T0 + 30_000))
    assert not any(name.startswith("confirm_sla") for name in cancelled)


def test_events_before_the_placement_do_not_count_and_phone_orders_have_no_clicks() -> None:
    early = facts(order_event("order.confirmed", "O1", T0 - 1, clicks=1), placed())
    assert "confirmation_seconds" not in early
    phone = facts(placed(channel="phone"), order_event("order.confirmed", "O1", T0 + 1, clicks=0))
    assert "clicks:confirmed" not in phone
    assert "confirm_sla:met" in phone


def test_shipment_notice_delay_notice_and_on_time_delivery() -> None:
    promised = format_rfc3339_ms(T0 + 48 * HOUR)
    got = facts(
        placed(),
        order_event("order.shipped", "O1", T0 + HOUR, promised_by=promised),
        order_event(
            "notification.sent", "O1", T0 + HOUR + 14 * MINUTE, kind="shipped", medium="email"
        ),
        order_event("order.delayed", "O1", T0 + 2 * HOUR),
        order_event("customer.contacted", "O1", T0 + 3 * HOUR),
        order_event("notification.sent", "O1", T0 + 4 * HOUR, kind="delayed", medium="sms"),
        order_event("order.delivered", "O1", T0 + 49 * HOUR),
    )
    assert got["ship_notice:met"] == (HOUR + 14 * MINUTE, 1)
    assert got["delay_notice:contact_first"] == (3 * HOUR, 1)
    assert "delay_notice:told_first" not in got
    assert got["on_time:delivered"] == (49 * HOUR, 1)
    assert "on_time:met" not in got


def run(runtime: WorkerRuntime, orders: dict[str, Any], *events: Any) -> list[Any]:
    return [runtime.process_order(orjson.dumps(e.body), 0, orders, now_ms=0) for e in events]


def test_the_worker_records_a_missed_minute_when_the_watermark_passes_it() -> None:
    runtime = WorkerRuntime(Settings(max_future="off", live=False, grace="1m"), CollectorRegistry())
    orders: dict[str, Any] = {}
    run(runtime, orders, placed())
    assert orders["O1"]["expired"] == []
    # Another order's event moves the watermark (event time - 1 min grace) past P + 60 s.
    run(runtime, orders, order_event("order.placed", "O2", T0 + 2 * MINUTE + 1, channel="app"))
    assert orders["O1"]["expired"] == [CONFIRM]
    metrics = scrape(runtime.registry)
    assert by(metrics, "kpistream_order_confirmation_sla_total", "result") == {("missed",): 1}
    assert total(metrics, "kpistream_orders_placed_total") == 2


def test_bad_and_repeated_order_events_are_rejected_or_dropped() -> None:
    runtime = WorkerRuntime(Settings(max_future="off", live=False), CollectorRegistry())
    orders: dict[str, Any] = {}
    event = placed()
    first, again = run(runtime, orders, event, event)
    assert first.rejection is None
    assert not first.duplicate
    assert again.duplicate
    bad = runtime.process_order(b'{"type": "order.placed"}', 0, orders, now_ms=0)
    assert bad.rejection is not None
    assert "event_id" in bad.rejection.detail
    metrics = scrape(runtime.registry)
    assert total(metrics, "kpistream_events_duplicate_total") == 1
    assert total(metrics, "kpistream_events_rejected_total") == 1
