"""The customer oracle (tests/oracle_customers.py) on small histories computed by hand
from docs/kpis.md (O7, O8, H8), so that the property test compares the stream with a
reference that is itself checked."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from stream.kpi.timefmt import format_rfc3339_ms
from tests.oracle_customers import (
    assert_customer_windows_match,
    compute_customer_windows,
    customer_sizes,
)
from tests.oracle_windows import WindowKey

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MONTH = 30 * DAY  # the retention and active-customer windows
SIZES = (HOUR, DAY)
# A 30-day window boundary (2026-11-03T00:00:00Z): retention window k starts here.
D0 = 692 * MONTH
C = D0 + 2 * DAY + 3 * HOUR  # a contact in the middle of an hour and a day

_ids = itertools.count(1)


def _event(type_: str, at_ms: int, customer: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": fields.pop("event_id", None) or f"e-{next(_ids):04d}",
        "type": type_,
        "occurred_at": format_rfc3339_ms(at_ms),
        "customer_id": customer,
        "t": at_ms,
        **fields,
    }


def ticket(at_ms: int, customer: str = "c-1", complaint: bool = False, **f: Any) -> dict:
    return _event(
        "ticket.created",
        at_ms,
        customer,
        ticket_id=f.pop("ticket_id", f"T-{next(_ids)}"),
        queue="billing",
        priority="normal",
        channel="email",
        subject_kind="complaint" if complaint else "question",
        **f,
    )


def contact(at_ms: int, customer: str = "c-1", **f: Any) -> dict[str, Any]:
    return _event("customer.contacted", at_ms, customer, order_id="O-x", **f)


def order(at_ms: int, customer: str = "c-1", **f: Any) -> dict[str, Any]:
    return _event(
        "order.placed", at_ms, customer, order_id=f.pop("order_id", f"O-{next(_ids)}"), **f
    )


def compute(*events: dict[str, Any]) -> dict[WindowKey, dict[str, Any]]:
    helpdesk = [e for e in events if e["type"].startswith("ticket.")]
    orders = [e for e in events if not e["type"].startswith("ticket.")]
    return compute_customer_windows(helpdesk, orders, SIZES)


def key(kpi: str, at_ms: int, size: int = DAY) -> WindowKey:
    return (kpi, size, at_ms // size * size, ())


def of(windows: dict[WindowKey, dict[str, Any]], kpi: str) -> dict[WindowKey, dict[str, Any]]:
    return {k: v for k, v in windows.items() if k[0] == kpi}


def conversions(windows: dict[WindowKey, dict[str, Any]], size: int = DAY) -> dict[int, tuple]:
    """{window start: (contacted, converted)} of the O7 windows of one size."""
    return {
        k[2]: (v["contacted"], v["converted"])
        for k, v in of(windows, "conversion_after_contact").items()
        if k[1] == size
    }


# --------------------------------------------------------------------------------------
# O7


def test_contact_then_order_six_days_later_converts() -> None:
    windows = compute(contact(C), order(C + 6 * DAY))
    end = C + 7 * DAY
    for size in (HOUR, DAY, MONTH):
        assert windows[key("conversion_after_contact", end, size)] == {
            "contacted": 1,
            "converted": 1,
            "rate": 1.0,
        }
    assert conversions(windows) == {end // DAY * DAY: (1, 1)}


def test_order_eight_days_later_does_not_convert() -> None:
    windows = compute(ticket(C), order(C + 8 * DAY))
    assert windows[key("conversion_after_contact", C + 7 * DAY)] == {
        "contacted": 1,
        "converted": 0,
        "rate": 0.0,
    }
    assert len(conversions(windows)) == 1


def test_two_contacts_in_one_period_count_once() -> None:
    # The second contact opens nothing, so the order 8 days after the first contact
    # (within 7 days of the second) does not convert the only period.
    windows = compute(ticket(C), contact(C + 3 * DAY), order(C + 8 * DAY))
    assert conversions(windows) == {(C + 7 * DAY) // DAY * DAY: (1, 0)}


def test_a_contact_after_the_period_ended_opens_another() -> None:
    second = C + 7 * DAY + HOUR
    windows = compute(contact(C), ticket(second), order(second + DAY))
    assert conversions(windows, HOUR) == {
        (C + 7 * DAY) // HOUR * HOUR: (1, 0),
        (second + 7 * DAY) // HOUR * HOUR: (1, 1),
    }


def test_a_contact_at_exactly_the_end_of_the_open_period_opens_the_next() -> None:
    # The open period (C, C + 7 d] does not end after C + 7 d: a contact then opens one.
    windows = compute(contact(C), contact(C + 7 * DAY))
    assert conversions(windows, HOUR) == {
        (C + 7 * DAY) // HOUR * HOUR: (1, 0),
        (C + 14 * DAY) // HOUR * HOUR: (1, 0),
    }


def test_two_contacts_at_the_same_millisecond_open_one_period() -> None:
    windows = compute(contact(C, event_id="b"), ticket(C, event_id="a"))
    assert conversions(windows) == {(C + 7 * DAY) // DAY * DAY: (1, 0)}


def test_order_at_exactly_c_plus_7d_converts_at_c_does_not() -> None:
    at_end = compute(contact(C), order(C + 7 * DAY))
    assert conversions(at_end) == {(C + 7 * DAY) // DAY * DAY: (1, 1)}
    same_ms = compute(contact(C), order(C))
    assert conversions(same_ms) == {(C + 7 * DAY) // DAY * DAY: (1, 0)}
    after_end = compute(contact(C), order(C + 7 * DAY + 1))
    assert conversions(after_end) == {(C + 7 * DAY) // DAY * DAY: (1, 0)}


def test_another_customers_order_does_not_convert() -> None:
    windows = compute(contact(C, "c-1"), order(C + DAY, "c-2"))
    assert conversions(windows) == {(C + 7 * DAY) // DAY * DAY: (1, 0)}


def test_periods_of_two_customers_add_up_in_one_window() -> None:
    windows = compute(contact(C, "c-1"), contact(C + MINUTE, "c-2"), order(C + DAY, "c-2"))
    assert windows[key("conversion_after_contact", C + 7 * DAY)] == {
        "contacted": 2,
        "converted": 1,
        "rate": 0.5,
    }


# --------------------------------------------------------------------------------------
# O8


def test_retention_base_and_retained_across_two_windows() -> None:
    windows = compute(
        order(D0 + DAY, "a"),
        order(D0 + 2 * DAY, "a"),  # a second order in k changes nothing
        order(D0 + MONTH + 5 * DAY, "a"),
        order(D0 + 3 * DAY, "b"),
        order(D0 + MONTH + DAY, "c"),
    )
    retention = of(windows, "customer_retention")
    assert retention == {
        # k + 1: a and b ordered in k; a ordered again.
        ("customer_retention", MONTH, D0 + MONTH, ()): {"base": 2, "retained": 1, "rate": 0.5},
        # k + 2: a and c ordered in k + 1; neither again.
        ("customer_retention", MONTH, D0 + 2 * MONTH, ()): {"base": 2, "retained": 0, "rate": 0.0},
    }


def test_retention_only_for_the_retention_size() -> None:
    windows = compute(order(D0, "a"), order(D0 + MONTH, "a"))
    sizes = {k[1] for k in of(windows, "customer_retention")}
    assert sizes == {MONTH}
    assert windows[("customer_retention", MONTH, D0 + MONTH, ())]["retained"] == 1
    # The first order at exactly the start of k and the second at exactly k + 1's start.
    assert windows[("customer_retention", MONTH, D0 + 2 * MONTH, ())] == {
        "base": 1,
        "retained": 0,
        "rate": 0.0,
    }


def test_sizes_are_the_configured_ones_and_the_retention_size_once() -> None:
    assert customer_sizes((HOUR, DAY), MONTH) == (HOUR, DAY, MONTH)
    assert customer_sizes((HOUR, MONTH), MONTH) == (HOUR, MONTH)


# --------------------------------------------------------------------------------------
# H8


def growth(windows: dict[WindowKey, dict[str, Any]], at_ms: int, size: int = DAY) -> dict:
    return windows[key("complaint_growth", at_ms, size)]


def test_active_customers_at_window_end_with_overlapping_orders_and_the_30_day_end() -> None:
    first, second = D0 + HOUR, D0 + 10 * DAY  # overlapping: active [first, second + 30 d)
    windows = compute(order(first), order(second))
    h8 = of(windows, "complaint_growth")
    # Days: the start (a change) and the end at D0 + 40 d (a change); nothing between,
    # the second order only extends the period.
    assert sorted(k[2] for k in h8 if k[1] == DAY) == [D0, D0 + 40 * DAY]
    assert growth(windows, D0)["active_customers"] == 1
    ended = growth(windows, D0 + 40 * DAY)
    assert ended["active_customers"] == 0
    assert ended["tickets_per_1000"] is None
    # The window before it ([D0 + 39 d, D0 + 40 d)) has no message: no previous values.
    assert ended["customer_growth"] is None
    assert key("complaint_growth", D0 + 39 * DAY) not in windows
    # Hours: the same two changes.
    assert sorted(k[2] for k in h8 if k[1] == HOUR) == [D0 + HOUR, D0 + 40 * DAY]
    # 30 days: active at the end of the first (the second order at D0 + 10 d is within
    # [end - 30 d, end)), not at the end of the second; customer growth -100 %.
    assert growth(windows, D0, MONTH)["active_customers"] == 1
    assert growth(windows, D0 + MONTH, MONTH) == {
        "tickets": 0,
        "complaints": 0,
        "active_customers": 0,
        "tickets_per_1000": None,
        "complaints_per_1000": None,
        "complaints_per_1000_change": None,
        "complaint_growth": None,
        "customer_growth": -1.0,
        "complaints_outgrow_customers": None,
        "external_customer_count": 0,
    }


def test_an_order_at_a_window_start_is_active_at_its_end_not_at_the_next() -> None:
    # Active over [D0, D0 + 30 d): at the last moment of the 30-day window [D0, D0 + 30 d)
    # the customer is active; at the end of the next one not.
    windows = compute(order(D0))
    assert growth(windows, D0, MONTH)["active_customers"] == 1
    assert growth(windows, D0 + MONTH, MONTH)["active_customers"] == 0
    # The day holding D0 + 30 d - 1 ms has no change; the day from D0 + 30 d has one.
    assert key("complaint_growth", D0 + MONTH - 1) not in windows
    assert growth(windows, D0 + MONTH)["active_customers"] == 0


def test_an_order_at_a_window_end_counts_in_the_next_window() -> None:
    end = D0 + 5 * DAY
    windows = compute(ticket(end - HOUR), order(end))
    assert growth(windows, end - HOUR)["active_customers"] == 0
    assert growth(windows, end)["active_customers"] == 1


def test_touching_orders_make_one_active_period() -> None:
    # [D0, D0 + 30 d) and [D0 + 30 d, D0 + 60 d): no change at D0 + 30 d.
    windows = compute(order(D0), order(D0 + MONTH))
    assert sorted(k[2] for k in of(windows, "complaint_growth") if k[1] == DAY) == [
        D0,
        D0 + 2 * MONTH,
    ]


def test_one_customer_goes_and_another_comes_is_no_change() -> None:
    windows = compute(order(D0 + HOUR, "a"), order(D0 + MONTH + 2 * HOUR, "b"))
    # Day D0 + 30 d: a goes at D0 + 30 d + 1 h, b comes at D0 + 30 d + 2 h: still 1.
    assert key("complaint_growth", D0 + MONTH) not in windows
    assert key("complaint_growth", D0 + MONTH, MONTH) not in windows
    # The day a comes and the day b goes (D0 + 60 d + 2 h) have a change.
    assert growth(windows, D0)["active_customers"] == 1
    assert growth(windows, D0 + 2 * MONTH)["active_customers"] == 0
    # With a ticket, the same day has a message (with the unchanged count).
    with_ticket = compute(
        order(D0 + HOUR, "a"), order(D0 + MONTH + 2 * HOUR, "b"), ticket(D0 + MONTH + 3 * HOUR)
    )
    assert growth(with_ticket, D0 + MONTH)["active_customers"] == 1


def test_a_customer_who_stops_and_orders_again_within_a_window_is_no_change() -> None:
    # Active [D0, D0 + 30 d) and [D0 + 30 d + 1 ms, ...): gone for a millisecond.
    windows = compute(order(D0), order(D0 + MONTH + 1))
    assert key("complaint_growth", D0 + MONTH, HOUR) not in windows
    assert key("complaint_growth", D0 + MONTH) not in windows
    assert key("complaint_growth", D0 + MONTH, MONTH) not in windows
    # 30 days: [D0 + 60 d, D0 + 90 d) has the end (at D0 + 60 d + 1 ms); the window
    # before it has no message, so no previous values.
    last = growth(windows, D0 + 2 * MONTH, MONTH)
    assert last["active_customers"] == 0
    assert last["customer_growth"] is None


def test_tickets_per_1000_without_active_customers_is_null() -> None:
    windows = compute(ticket(C, complaint=True), ticket(C + HOUR))
    assert of(windows, "complaint_growth")[key("complaint_growth", C)] == {
        "tickets": 2,
        "complaints": 1,
        "active_customers": 0,
        "tickets_per_1000": None,
        "complaints_per_1000": None,
        "complaints_per_1000_change": None,
        "complaint_growth": None,
        "customer_growth": None,
        "complaints_outgrow_customers": None,
        "external_customer_count": 0,
    }


def test_complaint_growth_customer_growth_and_the_flag() -> None:
    day = [D0 + n * DAY for n in range(6)]
    windows = compute(
        # Day 0: a and b become active; 2 complaints and a question.
        order(day[0] + HOUR, "a"),
        order(day[0] + HOUR, "b"),
        ticket(day[0] + 2 * HOUR, "a", complaint=True),
        ticket(day[0] + 3 * HOUR, "b", complaint=True),
        ticket(day[0] + 4 * HOUR, "x"),
        # Day 1: c becomes active; 3 complaints.
        order(day[1] + HOUR, "c"),
        *(ticket(day[1] + n * HOUR, "a", complaint=True) for n in range(3)),
        # Day 2: 4 complaints, no change in customers.
        *(ticket(day[2] + n * HOUR, "b", complaint=True) for n in range(4)),
        # Day 3: nothing (no message). Day 4: one question.
        ticket(day[4], "c"),
    )
    assert growth(windows, day[0]) == {
        "tickets": 3,
        "complaints": 2,
        "active_customers": 2,
        "tickets_per_1000": 1500.0,
        "complaints_per_1000": 1000.0,
        "complaints_per_1000_change": None,
        "complaint_growth": None,
        "customer_growth": None,
        "complaints_outgrow_customers": None,
        "external_customer_count": 0,
    }
    one = growth(windows, day[1])
    assert one == {
        "tickets": 3,
        "complaints": 3,
        "active_customers": 3,
        "tickets_per_1000": 1000.0,
        "complaints_per_1000": 1000.0,
        "complaints_per_1000_change": 0.0,
        "complaint_growth": 0.5,
        "customer_growth": 0.5,
        "complaints_outgrow_customers": 0,  # equal growth is not above
        "external_customer_count": 0,
    }
    two = growth(windows, day[2])
    assert two["complaints_per_1000"] == pytest.approx(4000 / 3)
    assert two["complaints_per_1000_change"] == pytest.approx(4000 / 3 - 1000)
    assert two["complaint_growth"] == pytest.approx(1 / 3)
    assert two["customer_growth"] == 0.0
    assert two["complaints_outgrow_customers"] == 1
    assert key("complaint_growth", day[3]) not in windows
    four = growth(windows, day[4])
    assert four["tickets"] == 1
    assert four["complaints"] == 0
    assert four["complaints_per_1000"] == 0.0
    assert four["complaints_per_1000_change"] is None
    assert four["complaint_growth"] is None
    assert four["complaints_outgrow_customers"] is None


def test_complaint_growth_from_zero_complaints_is_null() -> None:
    windows = compute(order(D0, "a"), ticket(D0 + HOUR), ticket(D0 + DAY, complaint=True))
    values = growth(windows, D0 + DAY)
    assert values["complaint_growth"] is None
    assert values["customer_growth"] == 0.0
    assert values["complaints_per_1000_change"] == 1000.0
    assert values["complaints_outgrow_customers"] is None


# --------------------------------------------------------------------------------------
# Duplicates


def test_duplicates_count_once() -> None:
    events = [ticket(C, complaint=True), contact(C + HOUR), order(C + DAY), order(D0 + 2 * MONTH)]
    once = compute(*events)
    twice = compute(*events, *events)
    assert once == twice
    assert growth(twice, C)["tickets"] == 1
    assert conversions(twice) == {(C + 7 * DAY) // DAY * DAY: (1, 1)}
    assert twice[("customer_retention", MONTH, D0 + MONTH, ())]["base"] == 1


def test_the_first_of_a_repeated_event_id_counts() -> None:
    windows = compute(ticket(C, event_id="same"), ticket(C + 3 * HOUR, event_id="same"))
    assert growth(windows, C, HOUR)["tickets"] == 1
    assert key("complaint_growth", C + 3 * HOUR, HOUR) not in windows


# --------------------------------------------------------------------------------------
# The comparison


def messages_of(expected: dict[WindowKey, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for (kpi, size, start, _), values in expected.items():
        window = f"{size // DAY}d" if size % DAY == 0 else f"{size // HOUR}h"
        out.append(
            {
                "kpi": kpi,
                "window": window,
                "window_start": format_rfc3339_ms(start),
                "window_end": format_rfc3339_ms(start + size),
                "dimensions": {},
                "values": dict(values),
                "is_final": True,
            }
        )
    return out


def sample() -> dict[WindowKey, dict[str, Any]]:
    return compute(ticket(C, complaint=True), contact(C), order(C + DAY), order(C + MONTH))


def test_match_accepts_the_oracles_own_messages() -> None:
    expected = sample()
    count = assert_customer_windows_match(messages_of(expected), expected, D0 + 10 * MONTH)
    assert count == len(expected)


def test_match_reports_a_wrong_value_and_ignores_non_final_messages() -> None:
    expected = sample()
    messages = messages_of(expected)
    first = next(m for m in messages if m["kpi"] == "conversion_after_contact")
    first["values"]["converted"] = 0
    with pytest.raises(AssertionError, match="converted is 0, oracle 1"):
        assert_customer_windows_match(messages, expected, D0 + 10 * MONTH)
    first["is_final"] = False
    with pytest.raises(AssertionError, match="no final message"):
        assert_customer_windows_match(messages, expected, D0 + 10 * MONTH)


def test_match_reports_an_int_where_a_float_is_wanted_only_when_different() -> None:
    expected = sample()
    messages = messages_of(expected)
    for message in messages:
        if message["kpi"] == "conversion_after_contact":
            message["values"]["rate"] = int(message["values"]["rate"])  # 1 for 1.0
    assert_customer_windows_match(messages, expected, D0 + 10 * MONTH)
    messages[0]["values"][next(iter(messages[0]["values"]))] = None
    with pytest.raises(AssertionError, match="oracle"):
        assert_customer_windows_match(messages, expected, D0 + 10 * MONTH)


def test_match_reports_an_unexpected_final_message() -> None:
    expected = sample()
    extra = {("complaint_growth", DAY, D0 + 5 * MONTH, ()): {"tickets": 0}}
    messages = messages_of({**expected, **extra})
    with pytest.raises(AssertionError, match="does not expect"):
        assert_customer_windows_match(messages, expected, D0 + 10 * MONTH)


def test_match_asks_only_windows_final_by_the_bound() -> None:
    expected = sample()
    last_end = max(k[2] + k[1] for k in expected)
    early = [m for m in messages_of(expected) if m["window_end"] != format_rfc3339_ms(last_end)]
    assert_customer_windows_match(early, expected, last_end - 1)
    with pytest.raises(AssertionError, match="no final message"):
        assert_customer_windows_match(early, expected, last_end)
