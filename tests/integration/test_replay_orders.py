"""A simulated month of orders and tickets (over 100,000 messages: 1 % duplicates, 5 % of
events out of order by up to 5 minutes, 0.1 % malformed) replayed with `kpi replay`
into a real broker and two workers that share the partitions of both topics: every
final order window (O1-O6), customer-join window (O7, O8, H8) and help-desk window on
kpi.windows.v1 equals what the batch oracles compute from the same file, and the order
counters summed over both workers' /metrics count every placement once.

`scripts/test -m integration -k month_of_orders -s` prints the throughput.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.feed import feed_to_file
from stream.local.simulator import SimConfig, simulate
from stream.report import read_kpi_topic
from tests.conftest import free_port
from tests.oracle_customers import assert_customer_windows_match, compute_customer_windows
from tests.oracle_orders import assert_order_windows_match, compute_order_windows
from tests.oracle_windows import assert_windows_match, compute_windows
from tests.scrape import samples, total

pytestmark = pytest.mark.integration

T0 = 1_456_790_400_000  # 2016-03-01T00:00:00Z
HOUR, DAY = 3_600_000, 86_400_000
SIZES_MS = (HOUR, DAY)
CUSTOMER_KPIS = {"conversion_after_contact", "customer_retention", "complaint_growth"}
ORDER_KPIS = {
    "orders",
    "order_confirmation_time",
    "order_confirmation_sla",
    "one_click_confirmation",
    "shipment_notice",
    "delay_notice",
    "on_time_delivery",
}


def simulated_month(path: Path) -> list[Any]:
    config = SimConfig(
        seed=2016,
        start_ms=T0,
        duration_ms=30 * DAY,
        tickets_per_hour=5.0,
        orders_per_hour=20.0,
        duplicate_share=0.01,
        malformed_share=0.001,
        late_share=0.05,
        late_max_ms=5 * 60_000,
    )
    messages = list(simulate(config))
    feed_to_file(iter(messages), path)
    return messages


def owned_and_idle(workers: list[Any]) -> list[dict[str, Any]] | None:
    """Every worker's metrics once they own all 10 partitions between them (help-desk,
    orders and customer activity, 3 each, and the merge's) and none has lag left."""
    all_metrics = [samples(w.metrics_text()) for w in workers]
    owned = sum(total(m, "kpistream_partitions_owned") for m in all_metrics)
    lags = [v for m in all_metrics for _, v in m.get("kpistream_consumer_lag_records", [])]
    return all_metrics if owned == 10 and len(lags) == 10 and not any(lags) else None


def test_a_month_of_orders_equals_the_oracle_on_two_workers(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_GRACE": "10m", "KPI_WINDOWS": "1h,1d"}
    path = tmp_path / "month.jsonl"
    messages = simulated_month(path)
    assert len(messages) >= 100_000

    first = start_worker(env)
    second = start_worker(
        {**env, "KPI_WEB_PORT": str(free_port()), "KPI_DATA_DIR": str(tmp_path / "worker-b")}
    )
    workers = [first, second]
    started = time.monotonic()
    replay = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", str(path)],
        env={**os.environ, **env},
        capture_output=True,
        timeout=600,
    )
    assert replay.returncode == 0, replay.stdout.decode() + replay.stderr.decode()

    deadline = time.monotonic() + 600
    while (metrics := owned_and_idle(workers)) is None:
        assert time.monotonic() < deadline, first.log_tail() + second.log_tail()
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    time.sleep(3)  # the last partials go out on the 1 s tick; then the merge is idle
    while (metrics := owned_and_idle(workers)) is None:
        assert time.monotonic() < deadline, first.log_tail() + second.log_tail()
        time.sleep(0.5)

    latest = read_kpi_topic(kafka.bootstrap, env["KPI_KPI_TOPIC"], timeout_s=300)
    marks: dict[str, list[float]] = {}
    for m in metrics:
        for labels, value in m.get("kpistream_watermark_timestamp_seconds", []):
            marks.setdefault(labels["topic"], []).append(value)
    assert set(marks) == {
        env["KPI_HELPDESK_TOPIC"],
        env["KPI_ORDERS_TOPIC"],
        env["KPI_CUSTOMERS_TOPIC"],
    }

    events: dict[str, list[dict[str, Any]]] = {"helpdesk": [], "orders": []}
    for m in messages:
        if m.kind != "malformed":
            body = orjson.loads(m.value)
            events[m.topic].append({**body, "t": parse_rfc3339_ms(body["occurred_at"])})
    order_messages = [v for v in latest.values() if v["kpi"] in ORDER_KPIS]
    customer_messages = [v for v in latest.values() if v["kpi"] in CUSTOMER_KPIS]
    ticket_messages = [v for v in latest.values() if v["kpi"] not in ORDER_KPIS | CUSTOMER_KPIS]

    orders_final = int(min(marks[env["KPI_ORDERS_TOPIC"]]) * 1000)
    assert orders_final >= T0 + 29 * DAY
    expected_orders = compute_order_windows(events["orders"], SIZES_MS)
    assert_order_windows_match(order_messages, expected_orders, final_through_ms=orders_final)
    final_days = [
        v
        for v in order_messages
        if v["kpi"] == "order_confirmation_sla" and v["window"] == "1d" and v["is_final"]
    ]
    assert len(final_days) >= 29 * 5  # every day, per channel and for all orders

    tickets_final = int(min(marks[env["KPI_HELPDESK_TOPIC"]]) * 1000)
    expected_tickets = compute_windows(events["helpdesk"], SIZES_MS)
    assert_windows_match(ticket_messages, expected_tickets, final_through_ms=tickets_final)

    # The joins by customer (O7, O8, H8), in the customer partitions' time: the smallest
    # of the input partitions'.
    customers_final = int(min(marks[env["KPI_CUSTOMERS_TOPIC"]]) * 1000)
    assert customers_final >= T0 + 29 * DAY
    expected_customers = compute_customer_windows(
        events["helpdesk"], events["orders"], SIZES_MS, retention_ms=30 * DAY
    )
    assert_customer_windows_match(
        customer_messages, expected_customers, final_through_ms=customers_final
    )
    compared = {v["kpi"] for v in customer_messages if v["is_final"]}
    assert compared >= {"conversion_after_contact", "complaint_growth"}

    # Live counters, summed over the workers: every placement counted once.
    placements = {e["event_id"] for e in events["orders"] if e["type"] == "order.placed"}
    summed = sum(total(m, "kpistream_orders_placed_total") for m in metrics)
    assert summed == len(placements)
    # Deliveries against a promise (O6), summed over both workers: the oracle's daily
    # windows hold each of them once.
    delivered = sum(
        v["delivered"]
        for (kpi, size, _, dims), v in expected_orders.items()
        if kpi == "on_time_delivery" and size == DAY and dims == ()
    )
    assert sum(total(m, "kpistream_order_deliveries_total") for m in metrics) == delivered

    print(
        f"\nreplayed {len(messages):,} messages of a month ({len(events['orders']):,} order "
        f"events) through two workers: {len(messages) / elapsed:,.0f} messages/s end to end, "
        f"{len(order_messages):,} order KPI messages, {len(expected_orders):,} order windows"
    )
