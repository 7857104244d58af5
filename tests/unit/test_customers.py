"""The customer join (O7 conversion, O8 retention, H8 active customers), pure."""

from __future__ import annotations

from collections import Counter

from stream.kpi.customers import (
    ACTIVE_CUSTOMERS,
    CustomerRules,
    CustomerState,
    add_activity,
    derive,
)

DAY = 86_400_000
T0 = 1_795_478_400_000  # 2026-11-24T00:00:00Z
RULES = CustomerRules(conversion_ms=7 * DAY, active_ms=30 * DAY, retention_window_ms=30 * DAY)


def customer(*activities: tuple[int, str], expired: tuple[int, ...] = ()) -> CustomerState:
    state = CustomerState("c-1")
    for n, (at, kind) in enumerate(activities):
        assert add_activity(state, {"event_id": f"e{n}", "t": at, "kind": kind}, RULES) is None
    state.expired = list(expired)
    return state


def facts(state: CustomerState) -> Counter[tuple[str, int]]:
    return Counter((c.name, c.at_ms - T0) for c in derive(state, RULES).contributions)


def test_a_contact_converts_when_an_order_follows_within_seven_days() -> None:
    got = facts(customer((T0, "ticket"), (T0 + 6 * DAY, "order")))
    # Decided at the end of the 7 days, in the window holding that moment.
    assert got[("conversion:contacted", 7 * DAY)] == 1
    assert got[("conversion:converted", 7 * DAY)] == 1


def test_an_unconverted_contact_counts_once_its_seven_days_have_run_out() -> None:
    state = customer((T0, "contact"), (T0 + 8 * DAY, "order"))
    assert ("conversion:contacted", 7 * DAY) not in facts(state)
    assert [(p.start_ms - T0, p.end_ms - T0) for p in derive(state, RULES).timers] == [(0, 7 * DAY)]
    state.expired = [T0]
    got = facts(state)
    assert got[("conversion:contacted", 7 * DAY)] == 1
    assert ("conversion:converted", 7 * DAY) not in got


def test_contacts_within_an_open_period_do_not_open_another() -> None:
    got = facts(customer((T0, "ticket"), (T0 + DAY, "contact"), (T0 + 2 * DAY, "order")))
    assert sum(n for (name, _), n in got.items() if name == "conversion:contacted") == 1


def test_active_customers_move_in_and_out_thirty_days_after_the_last_order() -> None:
    got = facts(customer((T0, "order"), (T0 + 10 * DAY, "order"), (T0 + 50 * DAY, "order")))
    moves = sorted((at, n) for (name, at), n in got.items() if name == ACTIVE_CUSTOMERS)
    assert moves == [(0, 1), (40 * DAY, 1), (50 * DAY, 1), (80 * DAY, 1)]
    values = {
        c.at_ms - T0: c.value
        for c in derive(customer((T0, "order")), RULES).contributions
        if c.name == ACTIVE_CUSTOMERS
    }
    assert values == {0: 1, 30 * DAY: -1}


def test_retention_counts_customers_of_the_previous_window_who_order_again() -> None:
    size = RULES.retention_window_ms
    k = T0 // size
    first = k * size + DAY
    got = facts(customer((first, "order"), (first + size, "order")))
    base_at, retained_at = (k + 1) * size - T0, first + size - T0
    assert got[("retention:base", base_at)] == 1
    assert got[("retention:retained", retained_at)] == 1
    # The second window's base (for the third window) is there too, unretained.
    assert got[("retention:base", base_at + size)] == 1


def test_duplicates_are_refused_and_old_activities_fall_out_of_the_look_back() -> None:
    state = customer((T0, "order"))
    assert add_activity(state, {"event_id": "e0", "t": T0, "kind": "order"}, RULES) == "duplicate"
    far = T0 + RULES.lookback_ms + RULES.retention_window_ms + DAY
    assert add_activity(state, {"event_id": "late", "t": far, "kind": "order"}, RULES) is None
    assert [a[2] for a in state.activities] == ["late"]


def test_the_external_customer_count_is_the_h8_base_where_reported() -> None:
    from stream.kpi.catalogue import Merged
    from stream.kpi.contrib import ALL_DIMS, NO_DIMS
    from stream.kpi.customer_catalogue import customer_window_values

    merged = {
        NO_DIMS: Merged(counts={"tickets": 6, "complaints": 3}),
        ALL_DIMS: Merged(active_end={"customers": 40}, active_delta={"customers": 1}),
    }
    day = 86_400_000
    by_orders = customer_window_values(merged, day, 30 * day, T0 + day, lambda _end: None)
    by_count = customer_window_values(merged, day, 30 * day, T0 + day, lambda _end: 1500.0)
    growth = {v.kpi: v.values for v in by_orders}["complaint_growth"]
    assert growth["active_customers"] == 40
    assert growth["complaints_per_1000"] == 75.0
    assert growth["external_customer_count"] == 0
    external = {v.kpi: v.values for v in by_count}["complaint_growth"]
    assert external["active_customers"] == 1500
    assert external["complaints_per_1000"] == 2.0
    assert external["external_customer_count"] == 1


def test_the_merge_takes_a_customer_count_for_the_periods_it_covers() -> None:
    from prometheus_client import CollectorRegistry

    from stream.runtime import WorkerRuntime
    from stream.settings import Settings

    runtime = WorkerRuntime(Settings(live=False), CollectorRegistry())
    state: dict[str, object] = {}
    message = {
        "source": "customers",
        "customer_count": 1200,
        "period_start_ms": T0,
        "period_end_ms": T0 + 30 * DAY,
    }
    assert runtime.merge_step(message, state, 0) == []
    assert runtime.customer_count_at(T0 + DAY) == 1200.0
    assert runtime.customer_count_at(T0 + 31 * DAY) is None
    restarted = WorkerRuntime(Settings(live=False), CollectorRegistry())
    restarted.load_customer_counts(state.items())
    assert restarted.customer_count_at(T0) == 1200.0
