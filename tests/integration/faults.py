"""The fault suite's common parts: a simulated history of tickets and orders, its replay,
waiting for the workers to be done, and the check that what users see is exact: every
final window on the KPI topic equals the batch oracles', and the live gauges summed over
the workers equal the oracle's (nothing lost, nothing counted twice)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.feed import feed_to_file
from stream.local.simulator import SimConfig, SimMessage, simulate
from stream.report import read_kpi_topic
from tests.oracle import compute
from tests.oracle_customers import assert_customer_windows_match, compute_customer_windows
from tests.oracle_orders import assert_order_windows_match, compute_order_windows
from tests.oracle_windows import assert_windows_match, compute_windows
from tests.scrape import by, samples, total

T0 = 1_456_790_400_000  # 2016-03-01T00:00:00Z
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
SIZES_MS = (HOUR, DAY)
WINDOWS = "1h,1d"
ORDER_KPIS = {
    "orders",
    "order_confirmation_time",
    "order_confirmation_sla",
    "one_click_confirmation",
    "shipment_notice",
    "delay_notice",
    "on_time_delivery",
}
CUSTOMER_KPIS = {"conversion_after_contact", "customer_retention", "complaint_growth"}
# Help-desk, order and customer-activity partitions (3 each) and the merge's one.
PARTITIONS = 10


def simulated_history(path: Path, days: int, seed: int, **rates: float) -> list[SimMessage]:
    """`days` of a help desk and its shop (1 % duplicates, 5 % out of order by up to
    5 minutes, 0.1 % malformed), written to `path` for `kpi replay`."""
    config = SimConfig(
        seed=seed,
        start_ms=T0,
        duration_ms=days * DAY,
        tickets_per_hour=rates.get("tickets_per_hour", 20.0),
        orders_per_hour=rates.get("orders_per_hour", 40.0),
        duplicate_share=0.01,
        malformed_share=0.001,
        late_share=0.05,
        late_max_ms=5 * MINUTE,
    )
    messages = list(simulate(config))
    feed_to_file(iter(messages), path)
    return messages


def start_replay(path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "replay", str(path), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(replay: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    out, _ = replay.communicate(timeout=timeout_s)
    assert replay.returncode == 0, out.decode(errors="replace")[-3000:]


def seen(metrics: dict[str, Any]) -> float:
    """Messages a worker has dealt with: valid, duplicate or rejected."""
    return sum(
        total(metrics, name)
        for name in (
            "kpistream_events_total",
            "kpistream_events_duplicate_total",
            "kpistream_events_rejected_total",
        )
    )


def lag_records(workers: list[Any]) -> float:
    lag = 0.0
    for w in workers:
        try:
            metrics = samples(w.metrics_text())
        except OSError:
            continue
        lag += total(metrics, "kpistream_consumer_lag_records")
    return lag


def owned_and_idle(workers: list[Any]) -> list[dict[str, Any]] | None:
    """Every worker's metrics once they own all partitions between them, each exactly
    once, and none has lag left."""
    all_metrics = [samples(w.metrics_text()) for w in workers]
    owned = sum(total(m, "kpistream_partitions_owned") for m in all_metrics)
    lags = [v for m in all_metrics for _, v in m.get("kpistream_consumer_lag_records", [])]
    done = owned == PARTITIONS and len(lags) == PARTITIONS and not any(lags)
    return all_metrics if done else None


def wait_done(workers: list[Any], timeout_s: float = 600) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s

    def wait() -> list[dict[str, Any]]:
        while (metrics := owned_and_idle(workers)) is None:
            assert time.monotonic() < deadline, "\n".join(w.log_tail() for w in workers)
            time.sleep(0.5)
        return metrics

    wait()
    time.sleep(3)  # the last partials go out on the 1 s tick; then the merge is idle
    return wait()


def parsed_events(messages: list[SimMessage]) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {"helpdesk": [], "orders": []}
    for m in messages:
        if m.kind != "malformed":
            body = orjson.loads(m.value)
            events[m.topic].append({**body, "t": parse_rfc3339_ms(body["occurred_at"])})
    return events


def assert_exact(
    bootstrap: str, env: dict[str, str], messages: list[SimMessage], metrics: list[dict[str, Any]]
) -> dict[str, int]:
    """See `_assert_exact`; on a failure the KPI topic is left in KPI_DATA_DIR/../kpi-topic.json
    for a look at what differs."""
    try:
        return _assert_exact(bootstrap, env, messages, metrics)
    except AssertionError:
        latest = read_kpi_topic(bootstrap, env["KPI_KPI_TOPIC"], timeout_s=300)
        dump = Path(env["KPI_DATA_DIR"]).parent / "kpi-topic.json"
        dump.write_bytes(orjson.dumps(latest))
        raise


def _assert_exact(
    bootstrap: str, env: dict[str, str], messages: list[SimMessage], metrics: list[dict[str, Any]]
) -> dict[str, int]:
    """What users see equals the oracles: the KPI topic's final windows of help desk,
    orders and customer joins, and the live gauges summed over the workers. Returns
    how many windows were compared."""
    latest = read_kpi_topic(bootstrap, env["KPI_KPI_TOPIC"], timeout_s=300)
    marks: dict[str, list[float]] = {}
    for m in metrics:
        for labels, value in m.get("kpistream_watermark_timestamp_seconds", []):
            marks.setdefault(labels["topic"], []).append(value)
    final = {topic: int(min(values) * 1000) for topic, values in marks.items()}
    events = parsed_events(messages)

    order_messages = [v for v in latest.values() if v["kpi"] in ORDER_KPIS]
    customer_messages = [v for v in latest.values() if v["kpi"] in CUSTOMER_KPIS]
    ticket_messages = [v for v in latest.values() if v["kpi"] not in ORDER_KPIS | CUSTOMER_KPIS]
    expected_tickets = compute_windows(events["helpdesk"], SIZES_MS)
    assert_windows_match(
        ticket_messages, expected_tickets, final_through_ms=final[env["KPI_HELPDESK_TOPIC"]]
    )
    expected_orders = compute_order_windows(events["orders"], SIZES_MS)
    assert_order_windows_match(
        order_messages, expected_orders, final_through_ms=final[env["KPI_ORDERS_TOPIC"]]
    )
    expected_customers = compute_customer_windows(
        events["helpdesk"], events["orders"], SIZES_MS, retention_ms=30 * DAY
    )
    assert_customer_windows_match(
        customer_messages, expected_customers, final_through_ms=final[env["KPI_CUSTOMERS_TOPIC"]]
    )
    # Live gauges, summed over the workers: every open ticket counted once, by queue,
    # priority and status (standbys and recovering partitions export nothing).
    summed: Counter[tuple[str, ...]] = Counter()
    for m in metrics:
        summed.update(by(m, "kpistream_tickets_active", "queue", "priority", "status"))
    ticket_events = [e for e in events["helpdesk"] if "ticket_id" in e]
    oracle = compute(ticket_events, final[env["KPI_HELPDESK_TOPIC"]])
    expected_active = Counter({k: v for k, v in oracle.active.items() if v})
    assert +summed == expected_active
    return {
        "ticket_windows": len(expected_tickets),
        "order_windows": len(expected_orders),
        "customer_windows": len(expected_customers),
        "kpi_messages": len(latest),
        "open_tickets": sum(expected_active.values()),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
