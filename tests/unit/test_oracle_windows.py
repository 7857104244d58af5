"""Pins the window oracle (tests/oracle_windows.py) with small cases worked out by hand,
so that the reference everyone compares against is itself checked against the spec."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from stream.kpi.timefmt import format_rfc3339_ms
from tests.oracle_windows import (
    Dims,
    WindowKey,
    assert_windows_match,
    compute_windows,
    parse_window_size,
    public_values,
)

SECOND = 1_000
MINUTE = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_795_510_800_000  # 2026-11-24T09:00:00.000Z: a whole hour
DAY0 = T0 - 9 * HOUR  # 2026-11-24T00:00:00.000Z

ALL: Dims = ()
_ids = itertools.count(1)


def dims(queue: str = "billing", priority: str = "normal") -> Dims:
    return (("queue", queue), ("priority", priority))


def event(kind: str, at_ms: int, ticket: str | None = "t-1", **fields: Any) -> dict[str, Any]:
    """An event as the oracle takes it: its JSON fields plus `t`. Generated ids grow with
    each call, so equal times are ordered by creation order unless an id is given."""
    body: dict[str, Any] = {
        "event_id": fields.pop("event_id", None) or f"e-{next(_ids):06d}",
        "type": kind,
        "occurred_at": format_rfc3339_ms(at_ms),
        "t": at_ms,
        "customer_id": "c-1",
        **fields,
    }
    if ticket is not None:
        body["ticket_id"] = ticket
    return body


def created(
    at_ms: int, ticket: str = "t-1", queue: str = "billing", priority: str = "normal", **f: Any
) -> dict[str, Any]:
    return event(
        "ticket.created", at_ms, ticket, queue=queue, priority=priority, channel="email", **f
    )


def reply(
    at_ms: int, ticket: str = "t-1", author: str = "agent", public: bool = True, **f: Any
) -> dict[str, Any]:
    return event("ticket.replied", at_ms, ticket, author=author, public=public, **f)


def status(at_ms: int, value: str, ticket: str = "t-1") -> dict[str, Any]:
    return event("ticket.status_changed", at_ms, ticket, status=value)


def solved(at_ms: int, ticket: str = "t-1", method: str = "agent", **f: Any) -> dict[str, Any]:
    return event("ticket.solved", at_ms, ticket, method=method, **f)


def assigned(at_ms: int, queue: str, ticket: str = "t-1", **f: Any) -> dict[str, Any]:
    return event("ticket.assigned", at_ms, ticket, queue=queue, **f)


def csat(at_ms: int, score: int, ticket: str = "t-1", **f: Any) -> dict[str, Any]:
    return event("survey.csat", at_ms, ticket, score=score, **f)


def of_kpi(windows: dict[WindowKey, dict[str, Any]], kpi: str) -> set[WindowKey]:
    return {key for key in windows if key[0] == kpi}


def latency(*seconds: float) -> dict[str, Any]:
    """The values of a latency window whose samples are given in rank order."""
    samples = sorted(float(s) for s in seconds)
    n = len(samples)
    return {
        "count": n,
        "sum_seconds": sum(samples),
        "p50_seconds": samples[50 * (n - 1) // 100],
        "p90_seconds": samples[90 * (n - 1) // 100],
        "p99_seconds": samples[99 * (n - 1) // 100],
        "_samples": samples,
    }


# --------------------------------------------------------------------------------------
# H2 first response


def test_first_response_ignores_customer_replies_internal_notes_and_system_messages() -> None:
    events = [
        created(T0),
        reply(T0 + 1 * MINUTE, author="customer"),
        reply(T0 + 2 * MINUTE, public=False),
        reply(T0 + 3 * MINUTE, author="system"),
        reply(T0 + 10 * MINUTE),
        reply(T0 + 20 * MINUTE),
    ]
    windows = compute_windows(events, (HOUR,))
    expected = {
        "count": 1,
        "sum_seconds": 600.0,
        "p50_seconds": 600.0,
        "p90_seconds": 600.0,
        "p99_seconds": 600.0,
        "_samples": [600.0],
    }
    assert windows[("first_response_time", HOUR, T0, dims())] == expected
    assert windows[("first_response_time", HOUR, T0, ALL)] == expected
    assert len(of_kpi(windows, "first_response_time")) == 2


def test_first_response_dims_are_the_queue_before_a_later_reassignment() -> None:
    events = [
        # t-1 is answered in billing, then moved: the reply stays in billing.
        created(T0, "t-1"),
        reply(T0 + 5 * MINUTE, "t-1"),
        assigned(T0 + 6 * MINUTE, "technical", "t-1"),
        # t-2 is moved first, then answered: the reply is technical's.
        created(T0, "t-2"),
        assigned(T0 + 1 * MINUTE, "technical", "t-2"),
        reply(T0 + 2 * MINUTE, "t-2"),
    ]
    windows = compute_windows(events, (HOUR,))
    assert windows[("first_response_time", HOUR, T0, dims("billing"))]["_samples"] == [300.0]
    assert windows[("first_response_time", HOUR, T0, dims("technical"))]["_samples"] == [120.0]
    # Rollup: samples [120, 300]; every rank floor(q * 1) is 0.
    assert windows[("first_response_time", HOUR, T0, ALL)] == latency(120, 300)
    assert windows[("first_response_time", HOUR, T0, ALL)]["p99_seconds"] == 120.0


def test_first_response_percentiles_are_the_floor_q_n_minus_1_rank() -> None:
    events = []
    for i in range(11):  # latencies 1..11 minutes, answered in the creation hour
        events += [created(T0, f"t-{i}"), reply(T0 + (i + 1) * MINUTE, f"t-{i}")]
    values = compute_windows(events, (HOUR,))[("first_response_time", HOUR, T0, ALL)]
    # n = 11: p50 rank 5 -> 6 min, p90 rank 9 -> 10 min, p99 rank floor(9.9) = 9 -> 10 min.
    assert values["count"] == 11
    assert values["sum_seconds"] == 66 * 60.0
    assert (values["p50_seconds"], values["p90_seconds"], values["p99_seconds"]) == (
        360.0,
        600.0,
        600.0,
    )


def test_reply_stamped_before_creation_counts_zero_seconds_in_the_creation_dims() -> None:
    events = [
        assigned(T0 + 1 * MINUTE, "technical"),  # before the creation: sets nothing
        reply(T0 + 5 * MINUTE),
        created(T0 + 10 * MINUTE),
    ]
    windows = compute_windows(events, (HOUR,))
    assert windows[("first_response_time", HOUR, T0, dims("billing"))] == latency(0)
    # The answer (at T0+5m) stops the clock before D: met, in the hour of the answer.
    sla = windows[("first_response_sla", HOUR, T0, dims("billing"))]
    assert sla == {"met": 1, "breached": 0, "total": 1, "attainment": 1.0}
    # The ticket is new in billing at the end of the hour.
    active = windows[("tickets_active", HOUR, T0, dims("billing"))]
    assert active == {"new": 1, "open": 0, "pending": 0, "on_hold": 0, "active": 1}
    assert not any(key[3] == dims("technical") for key in windows)


def test_tie_order_puts_ticket_created_first() -> None:
    # All at T0; by event id alone the assignment and the reply would come first.
    events = [
        created(T0, event_id="z-created"),
        assigned(T0, "technical", event_id="a-assign"),
        reply(T0, event_id="b-reply"),
        event("ticket.escalated", T0 + MINUTE),
    ]
    windows = compute_windows(events, (HOUR,))
    # Order: created, a-assign, b-reply. The reply sees the assignment; latency 0 s.
    assert windows[("first_response_time", HOUR, T0, dims("technical"))] == latency(0)
    # The creation counts in the dimensions it sets; the escalation after the move.
    created_in = windows[("escalation_rate", HOUR, T0, dims("billing"))]
    assert (created_in["created"], created_in["escalated"]) == (1, 0)
    escalated_in = windows[("escalation_rate", HOUR, T0, dims("technical"))]
    assert (escalated_in["created"], escalated_in["escalated"]) == (0, 1)
    assert escalated_in["rate"] is None


# --------------------------------------------------------------------------------------
# H3, H5 SLA clocks


def test_never_answered_ticket_breaches_at_its_deadline_in_the_deadline_window() -> None:
    events = [
        created(T0 + 30 * SECOND, priority="urgent"),
        assigned(T0 + 40 * MINUTE, "technical"),
    ]
    windows = compute_windows(events, (MINUTE,))
    breach = {"met": 0, "breached": 1, "total": 1, "attainment": 0.0}
    # First response D = T0 + 1 h 30 s: the minute window starting at T0 + 1 h.
    assert windows[("first_response_sla", MINUTE, T0 + HOUR, dims("technical", "urgent"))] == breach
    assert windows[("first_response_sla", MINUTE, T0 + HOUR, ALL)] == breach
    # Resolution D = T0 + 48 h 30 s.
    assert (
        windows[("resolution_sla", MINUTE, T0 + 48 * HOUR, dims("technical", "urgent"))] == breach
    )
    sla_keys = of_kpi(windows, "first_response_sla") | of_kpi(windows, "resolution_sla")
    assert len(sla_keys) == 4


def test_late_answer_breaches_at_the_deadline_and_an_answer_at_the_deadline_is_met() -> None:
    events = [
        created(T0, "late", priority="urgent"),
        reply(T0 + 2 * HOUR, "late"),
        created(T0, "on-time", priority="urgent"),
        reply(T0 + HOUR, "on-time"),
    ]
    windows = compute_windows(events, (HOUR,))
    both = {"met": 1, "breached": 1, "total": 2, "attainment": 0.5}
    assert windows[("first_response_sla", HOUR, T0 + HOUR, dims(priority="urgent"))] == both
    assert ("first_response_sla", HOUR, T0 + 2 * HOUR, ALL) not in windows


def test_solve_before_deadline_without_reply_has_no_first_response_result() -> None:
    events = [created(T0), solved(T0 + HOUR, method="self_service")]
    windows = compute_windows(events, (HOUR,))
    assert of_kpi(windows, "first_response_sla") == set()
    met = {"met": 1, "breached": 0, "total": 1, "attainment": 1.0}
    assert windows[("resolution_sla", HOUR, T0 + HOUR, dims())] == met
    solves = windows[("resolved_issues", HOUR, T0 + HOUR, dims())]
    assert solves == {"solved": 1, "agent": 0, "self_service": 1, "automation": 0, "phone": 0}


def test_sla_target_and_priority_come_from_the_creation() -> None:
    events = [
        created(T0, priority="low"),
        event("ticket.priority_changed", T0 + MINUTE, priority="urgent"),
        reply(T0 + 2 * HOUR),
    ]
    windows = compute_windows(events, (HOUR,))
    # Low's 48 h target: met at the reply, under P0 = low although it is urgent now.
    met = {"met": 1, "breached": 0, "total": 1, "attainment": 1.0}
    assert windows[("first_response_sla", HOUR, T0 + 2 * HOUR, dims(priority="low"))] == met
    # The latency itself is in the dimensions of the reply.
    assert ("first_response_time", HOUR, T0 + 2 * HOUR, dims(priority="urgent")) in windows
    # A 1 h target for low makes the same reply a breach at T0 + 1 h.
    strict = compute_windows(events, (HOUR,), first_response_target_ms={"low": HOUR})
    assert strict[("first_response_sla", HOUR, T0 + HOUR, dims(priority="low"))]["breached"] == 1


# --------------------------------------------------------------------------------------
# H4 resolution, requester wait, agent work


def test_requester_wait_pauses_in_pending_on_hold_and_a_solved_status() -> None:
    events = [
        created(T0),
        status(T0 + 10 * MINUTE, "pending"),
        status(T0 + 30 * MINUTE, "open"),
        status(T0 + 40 * MINUTE, "on_hold"),
        status(T0 + 50 * MINUTE, "open"),
        status(T0 + 55 * MINUTE, "solved"),  # a status, not a solve
        status(T0 + 58 * MINUTE, "open"),
        solved(T0 + 60 * MINUTE),
    ]
    windows = compute_windows(events, (DAY,))
    # Running: [0, 10) + [30, 40) + [50, 55) + [58, 60) minutes = 27 min.
    assert windows[("requester_wait_time", DAY, DAY0, dims())] == latency(27 * 60)
    # The first ticket.solved is the solve: 1 h.
    assert windows[("resolution_time", DAY, DAY0, dims())] == latency(3600)


def test_full_resolution_is_to_the_last_solve_and_agent_work_counts_every_reopen() -> None:
    events = [
        created(T0),
        solved(T0 + 10 * MINUTE),
        event("ticket.reopened", T0 + 30 * MINUTE),
        solved(T0 + 50 * MINUTE),
        event("ticket.closed", T0 + 90 * MINUTE),
    ]
    windows = compute_windows(events, (DAY,))
    assert windows[("resolution_time", DAY, DAY0, ALL)] == latency(600)
    assert windows[("requester_wait_time", DAY, DAY0, ALL)] == latency(600)
    assert windows[("full_resolution_time", DAY, DAY0, ALL)] == latency(50 * 60)
    # new [0, 10) + open [30, 50) = 30 min; solved pauses it.
    assert windows[("agent_work_time", DAY, DAY0, ALL)] == latency(30 * 60)
    assert windows[("reopen_rate", DAY, DAY0, ALL)] == {"solved": 2, "reopened": 1, "rate": 0.5}


# --------------------------------------------------------------------------------------
# H1 active issues


def test_reopened_ticket_is_active_again_at_window_end() -> None:
    events = [
        created(T0),
        solved(T0 + 10 * MINUTE),
        event("ticket.reopened", T0 + 70 * MINUTE),
    ]
    hourly = compute_windows(events, (HOUR,))
    open_one = {"new": 0, "open": 1, "pending": 0, "on_hold": 0, "active": 1}
    # Hour 0: created and solved inside it, so not active at its start or end: no message.
    assert of_kpi(hourly, "tickets_active") == {
        ("tickets_active", HOUR, T0 + HOUR, dims()),
        ("tickets_active", HOUR, T0 + HOUR, ALL),
    }
    assert hourly[("tickets_active", HOUR, T0 + HOUR, dims())] == open_one

    minutes = compute_windows(events, (MINUTE,))
    new_one = {"new": 1, "open": 0, "pending": 0, "on_hold": 0, "active": 1}
    zero = {"new": 0, "open": 0, "pending": 0, "on_hold": 0, "active": 0}
    # Created in the first minute: a change. The quiet minutes after it send nothing (a
    # consumer keeps the last value).
    assert minutes[("tickets_active", MINUTE, T0, ALL)] == new_one
    assert ("tickets_active", MINUTE, T0 + 9 * MINUTE, ALL) not in minutes
    # Solved at T0+10m: active at that minute's start, not at its end: a change, zeros.
    assert minutes[("tickets_active", MINUTE, T0 + 10 * MINUTE, ALL)] == zero
    assert ("tickets_active", MINUTE, T0 + 11 * MINUTE, ALL) not in minutes
    assert ("tickets_active", MINUTE, T0 + 69 * MINUTE, ALL) not in minutes
    assert minutes[("tickets_active", MINUTE, T0 + 70 * MINUTE, ALL)] == open_one
    # Nothing after the last event's minute.
    assert ("tickets_active", MINUTE, T0 + 71 * MINUTE, ALL) not in minutes


# --------------------------------------------------------------------------------------
# Duplicates, tickets never created


def test_duplicates_are_counted_once_and_the_first_copy_is_kept() -> None:
    events = [
        created(T0),
        solved(T0 + 5 * MINUTE, event_id="dup-solve", method="agent"),
        solved(T0 + 6 * MINUTE, event_id="dup-solve", method="phone"),
        csat(T0 + 7 * MINUTE, 5, event_id="dup-csat"),
        csat(T0 + 7 * MINUTE, 5, event_id="dup-csat"),
    ]
    windows = compute_windows(events, (HOUR,))
    solves = windows[("resolved_issues", HOUR, T0, ALL)]
    assert solves == {"solved": 1, "agent": 1, "self_service": 0, "automation": 0, "phone": 0}
    assert windows[("csat", HOUR, T0, ALL)]["answers"] == 1


def test_events_of_a_ticket_never_created_count_nowhere() -> None:
    events = [solved(T0, "ghost"), csat(T0 + MINUTE, 5, "ghost"), reply(T0, "ghost")]
    assert compute_windows(events, (MINUTE, HOUR)) == {}


# --------------------------------------------------------------------------------------
# H7, H10, H11, H13, H14, H15


def test_escalation_rate_counts_complaint_escalations_per_event() -> None:
    events = [
        created(T0, "t-1", subject_kind="complaint"),
        event("ticket.escalated", T0 + 1 * MINUTE, "t-1"),
        event("ticket.escalated", T0 + 2 * MINUTE, "t-1", level=2),
        created(T0 + 3 * MINUTE, "t-2", subject_kind="question"),
        created(T0 + 4 * MINUTE, "t-3"),
        event("ticket.escalated", T0 + 5 * MINUTE, "t-3"),
        event("ticket.escalated", T0 + HOUR + MINUTE, "t-3"),
    ]
    windows = compute_windows(events, (HOUR,))
    assert windows[("escalation_rate", HOUR, T0, ALL)] == {
        "created": 3,
        "escalated": 3,
        "rate": 1.0,
        "complaints_created": 1,
        "complaints_escalated": 2,
        "complaint_rate": 2.0,
    }
    assert windows[("escalation_rate", HOUR, T0 + HOUR, ALL)] == {
        "created": 0,
        "escalated": 1,
        "rate": None,
        "complaints_created": 0,
        "complaints_escalated": 0,
        "complaint_rate": None,
    }


def test_work_per_interaction_counts_public_agent_touches_before_the_first_solve() -> None:
    events = [
        created(T0, "t-1"),
        reply(T0 + 1 * MINUTE, "t-1", handle_seconds=30),
        reply(T0 + 2 * MINUTE, "t-1", author="customer"),
        reply(T0 + 3 * MINUTE, "t-1", public=False, handle_seconds=99),  # internal note
        solved(T0 + 4 * MINUTE, "t-1"),
        reply(T0 + 5 * MINUTE, "t-1"),  # after the solve: a reply, not a touch
        created(T0, "t-2"),
        reply(T0 + 1 * MINUTE, "t-2", handle_seconds=10),
        reply(T0 + 2 * MINUTE, "t-2", handle_seconds=50),
        solved(T0 + 6 * MINUTE, "t-2"),
    ]
    values = compute_windows(events, (HOUR,))[("work_per_interaction", HOUR, T0, ALL)]
    assert values == {
        "first_solves": 2,
        "touches": 3,
        "touches_per_solved": 1.5,
        "one_touch": 1,
        "one_touch_rate": 0.5,
        "agent_replies": 4,
        "handle_count": 3,
        "handle_p50_seconds": 30.0,  # [10, 30, 50]: rank floor(0.5 * 2) = 1
        "handle_p90_seconds": 30.0,  # rank floor(0.9 * 2) = 1
        "_handle_samples": [10.0, 30.0, 50.0],
    }


def test_value_settled_per_currency() -> None:
    events = [
        created(T0, "t-1"),
        solved(T0 + 1 * MINUTE, "t-1", settled_amount={"value": "10.50", "currency": "EUR"}),
        created(T0, "t-2", queue="technical", priority="high"),
        solved(T0 + 2 * MINUTE, "t-2", settled_amount={"value": "4.25", "currency": "EUR"}),
        created(T0, "t-3"),
        solved(T0 + 3 * MINUTE, "t-3", settled_amount={"value": "3", "currency": "USD"}),
        created(T0, "t-4"),
        solved(T0 + 4 * MINUTE, "t-4"),  # no amount: not a settled solve
    ]
    windows = compute_windows(events, (HOUR,))
    eur, usd = (("currency", "EUR"),), (("currency", "USD"),)
    assert {key[3]: windows[key] for key in of_kpi(windows, "value_settled")} == {
        eur: {"amount": 14.75, "solves": 2},
        usd: {"amount": 3.0, "solves": 1},
        (*dims(), ("currency", "EUR")): {"amount": 10.5, "solves": 1},
        (*dims("technical", "high"), ("currency", "EUR")): {"amount": 4.25, "solves": 1},
        (*dims(), ("currency", "USD")): {"amount": 3.0, "solves": 1},
    }


def test_csat_change_is_against_the_previous_window_of_the_same_size() -> None:
    events = [
        created(T0 - MINUTE),
        csat(T0 + 1 * MINUTE, 5),
        csat(T0 + 2 * MINUTE, 2),
        csat(T0 + HOUR + 1 * MINUTE, 4),
        csat(T0 + HOUR + 2 * MINUTE, 5),
        csat(T0 + HOUR + 3 * MINUTE, 1),
        csat(T0 + 3 * HOUR, 5),  # the hour before it has no answers
    ]
    windows = compute_windows(events, (HOUR,))
    first = windows[("csat", HOUR, T0, ALL)]
    assert first == {"answers": 2, "satisfied": 1, "csat": 0.5, "change": None}
    second = windows[("csat", HOUR, T0 + HOUR, dims())]
    assert (second["answers"], second["satisfied"]) == (3, 2)
    assert second["csat"] == pytest.approx(2 / 3)
    assert second["change"] == pytest.approx(2 / 3 - 1 / 2)
    fourth = windows[("csat", HOUR, T0 + 3 * HOUR, ALL)]
    assert fourth == {"answers": 1, "satisfied": 1, "csat": 1.0, "change": None}


def test_nps_counts_promoters_passives_and_detractors() -> None:
    scores = [10, 9, 8, 6, 0]
    events = [created(T0)] + [
        event("survey.nps", T0 + i * MINUTE, score=score) for i, score in enumerate(scores)
    ]
    events += [event("survey.nps", T0 + HOUR, score=10), event("survey.nps", T0 + HOUR, score=7)]
    windows = compute_windows(events, (HOUR,))
    assert windows[("nps", HOUR, T0, ALL)] == {
        "answers": 5,
        "promoters": 2,
        "passives": 1,
        "detractors": 2,
        "nps": 0.0,
    }
    assert windows[("nps", HOUR, T0 + HOUR, dims())]["nps"] == 50.0


def test_self_service_success_rate_and_percentiles_with_or_without_a_ticket() -> None:
    sessions = [(4, 8, True), (1, 2, False), (10, 20, True), (3, 6, True), (2, 4, False)]
    events = [
        event(
            "selfservice.session",
            T0 + i * MINUTE,
            None if i == 0 else f"never-created-{i}",
            screens=screens,
            clicks=clicks,
            succeeded=ok,
        )
        for i, (screens, clicks, ok) in enumerate(sessions)
    ]
    windows = compute_windows(events, (HOUR,))
    assert set(windows) == {("self_service", HOUR, T0, ALL)}
    # screens [1, 2, 3, 4, 10], clicks [2, 4, 6, 8, 20]: p50 rank 2, p90 rank floor(3.6) = 3.
    assert windows[("self_service", HOUR, T0, ALL)] == {
        "sessions": 5,
        "succeeded": 3,
        "success_rate": 0.6,
        "screens_p50": 3.0,
        "screens_p90": 4.0,
        "clicks_p50": 6.0,
        "clicks_p90": 8.0,
        "_screens_samples": [1.0, 2.0, 3.0, 4.0, 10.0],
        "_clicks_samples": [2.0, 4.0, 6.0, 8.0, 20.0],
    }


# --------------------------------------------------------------------------------------
# assert_windows_match


def window_text(size_ms: int) -> str:
    return {MINUTE: "1m", HOUR: "1h", DAY: "1d"}[size_ms]


def message(
    key: WindowKey, values: dict[str, Any], *, final: bool = True, revision: int = 0
) -> dict[str, Any]:
    """A kpi.windows.v1 message carrying `values` for `key`."""
    kpi, size_ms, start, key_dims = key
    return {
        "kpi": kpi,
        "window": window_text(size_ms),
        "window_start": format_rfc3339_ms(start),
        "window_end": format_rfc3339_ms(start + size_ms),
        "dimensions": dict(key_dims),
        "revision": revision,
        "is_final": final,
        "values": public_values(values),
        "emitted_at": format_rfc3339_ms(start + size_ms + 11 * MINUTE),
        "schema_version": 1,
    }


@pytest.fixture
def scenario() -> dict[WindowKey, dict[str, Any]]:
    """Two tickets answered in the first hour, one of them solved in the second."""
    events = [
        created(T0, "t-1"),
        reply(T0 + 10 * MINUTE, "t-1"),
        created(T0, "t-2"),
        reply(T0 + 20 * MINUTE, "t-2"),
        solved(T0 + HOUR + MINUTE, "t-2"),
    ]
    return compute_windows(events, (HOUR,))


def test_assert_windows_match_passes_on_matching_final_messages(
    scenario: dict[WindowKey, dict[str, Any]],
) -> None:
    messages = [message(key, values, revision=1) for key, values in scenario.items()]
    # A percentile within 1 % of the exact rank value is a match.
    fr_all = ("first_response_time", HOUR, T0, ALL)
    close = next(m for m in messages if m["kpi"] == "first_response_time" and not m["dimensions"])
    close["values"]["p50_seconds"] = scenario[fr_all]["p50_seconds"] * 1.005
    # A non-final revision with other values is ignored.
    messages.append(message(fr_all, {**scenario[fr_all], "count": 99}, final=False))
    assert_windows_match(messages, scenario, final_through_ms=T0 + 100 * HOUR)


def test_assert_windows_match_fails_on_a_wrong_count(
    scenario: dict[WindowKey, dict[str, Any]],
) -> None:
    messages = [message(key, values) for key, values in scenario.items()]
    fr = next(m for m in messages if m["kpi"] == "first_response_time" and not m["dimensions"])
    fr["values"]["count"] = 3
    with pytest.raises(AssertionError, match=r"first_response_time 1h .* all: count is 3"):
        assert_windows_match(messages, scenario, final_through_ms=T0 + 100 * HOUR)


def test_assert_windows_match_fails_on_a_count_sent_as_float(
    scenario: dict[WindowKey, dict[str, Any]],
) -> None:
    messages = [message(key, values) for key, values in scenario.items()]
    fr = next(m for m in messages if m["kpi"] == "first_response_time" and not m["dimensions"])
    fr["values"]["count"] = 2.0
    with pytest.raises(AssertionError, match=r"count is 2\.0"):
        assert_windows_match(messages, scenario, final_through_ms=T0 + 100 * HOUR)


def test_assert_windows_match_fails_on_a_missing_window_only_once_it_is_due(
    scenario: dict[WindowKey, dict[str, Any]],
) -> None:
    second_hour = ("resolved_issues", HOUR, T0 + HOUR, ALL)
    messages = [message(key, values) for key, values in scenario.items() if key != second_hour]
    with pytest.raises(AssertionError, match=r"resolved_issues 1h 2026-11-24T10:00.* no final"):
        assert_windows_match(messages, scenario, final_through_ms=T0 + 2 * HOUR)
    # Not final yet by T0 + 2h - 1 ms: not required.
    assert_windows_match(messages, scenario, final_through_ms=T0 + 2 * HOUR - 1)


def test_assert_windows_match_fails_on_a_percentile_beyond_the_accuracy(
    scenario: dict[WindowKey, dict[str, Any]],
) -> None:
    messages = [message(key, values) for key, values in scenario.items()]
    fr = next(m for m in messages if m["kpi"] == "first_response_time" and not m["dimensions"])
    fr["values"]["p90_seconds"] *= 1.02
    with pytest.raises(AssertionError, match="p90_seconds"):
        assert_windows_match(messages, scenario, final_through_ms=T0 + 100 * HOUR)


def test_assert_windows_match_fails_on_an_unexpected_final_message(
    scenario: dict[WindowKey, dict[str, Any]],
) -> None:
    messages = [message(key, values) for key, values in scenario.items()]
    extra = ("first_response_time", HOUR, T0, dims("returns"))
    messages.append(message(extra, latency(5)))
    with pytest.raises(AssertionError, match="queue=returns,priority=normal: final message"):
        assert_windows_match(messages, scenario, final_through_ms=T0 + 100 * HOUR)


def test_parse_window_size_reads_every_unit() -> None:
    assert [parse_window_size(t) for t in ("1m", "1h", "1d", "90s", "250ms")] == [
        MINUTE,
        HOUR,
        DAY,
        90 * SECOND,
        250,
    ]
    with pytest.raises(ValueError, match="window size"):
        parse_window_size("1w")
