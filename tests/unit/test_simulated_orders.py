"""`kpi simulate` exercises every order and customer KPI, both ways: the simulated month
(the one the integration test replays) has late and timely confirmations, one- and
multi-click confirmations, shipments with and without a timely notice, delays told
before and after the customer's contact, deliveries on time and late, contacts that
convert and contacts that do not, customers retained and lost. Read off the batch
oracles, so the test says what users would see on kpi.windows.v1."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.simulator import SimConfig, simulate
from tests.oracle_customers import compute_customer_windows
from tests.oracle_orders import compute_order_windows

T0 = 1_456_790_400_000  # 2016-03-01T00:00:00Z
DAY = 86_400_000


@pytest.fixture(scope="module")
def month() -> dict[str, list[dict[str, Any]]]:
    config = SimConfig(
        seed=2016, start_ms=T0, duration_ms=30 * DAY, tickets_per_hour=5.0, orders_per_hour=20.0
    )
    events: dict[str, list[dict[str, Any]]] = {"helpdesk": [], "orders": []}
    for m in simulate(config):
        body = orjson.loads(m.value)
        events[m.topic].append({**body, "t": parse_rfc3339_ms(body["occurred_at"])})
    return events


def totals(windows: dict[Any, dict[str, Any]], kpi: str, size: int) -> dict[str, float]:
    """Each value of `kpi` summed over the all-dimensions windows of `size`."""
    out: dict[str, float] = {}
    for (name, window, _, dims), values in windows.items():
        if name == kpi and window == size and dims == ():
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[key] = out.get(key, 0) + value
    return out


def test_the_simulated_month_has_both_outcomes_of_every_order_kpi(
    month: dict[str, list[dict[str, Any]]],
) -> None:
    windows = compute_order_windows(month["orders"], (DAY,))
    sla = totals(windows, "order_confirmation_sla", DAY)
    assert sla["met"] > sla["missed"] > 0  # most within the minute, some late
    clicks = totals(windows, "one_click_confirmation", DAY)
    assert clicks["confirmed"] > clicks["one_click"] > 0  # one click and more
    shipped = totals(windows, "shipment_notice", DAY)
    assert shipped["notified"] > 0
    assert shipped["missed"] > 0
    delay = totals(windows, "delay_notice", DAY)
    assert delay["told_first"] > 0
    assert delay["contact_first"] > 0
    delivered = totals(windows, "on_time_delivery", DAY)
    assert delivered["delivered"] > delivered["on_time"] > 0
    assert totals(windows, "orders", DAY)["cancelled"] > 0


def test_the_simulated_month_has_conversions_churn_and_complaints(
    month: dict[str, list[dict[str, Any]]],
) -> None:
    windows = compute_customer_windows(
        month["helpdesk"], month["orders"], (DAY,), retention_ms=30 * DAY
    )
    conversion = totals(windows, "conversion_after_contact", DAY)
    assert conversion["contacted"] > conversion["converted"] > 0
    growth = totals(windows, "complaint_growth", DAY)
    assert growth["complaints"] > 0
    assert growth["tickets"] > growth["complaints"]
    retention = totals(windows, "customer_retention", 30 * DAY)
    assert retention["base"] > retention["retained"] > 0
