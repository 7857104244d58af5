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
