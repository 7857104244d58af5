"""Business hours for the SLA clocks: open time only, in the schedule's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.kpi.calendar import BusinessCalendar, CalendarError
from stream.kpi.sla import FIRST_RESPONSE, SlaPolicy
from stream.kpi.tickets import TicketState, add_event, derive
from tests.unit.helpers import created, ticket_event

HOUR = 3_600_000
OFFICE = BusinessCalendar.parse("mon-fri 08:00-17:00")


def ms(text: str, zone: str = "UTC") -> int:
    moment = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp() * 1000)


def test_four_hours_from_friday_afternoon_end_on_monday_morning() -> None:
    # Friday 2026-11-27 16:00: one hour left that day, three on Monday from 08:00.
    assert OFFICE.add(ms("2026-11-27T16:00"), 4 * HOUR) == ms("2026-11-30T11:00")


def test_a_clock_started_at_night_runs_from_the_next_opening() -> None:
    assert OFFICE.add(ms("2026-11-24T22:00"), HOUR) == ms("2026-11-25T09:00")


def test_holidays_have_no_open_time() -> None:
    calendar = BusinessCalendar.parse("mon-fri 08:00-17:00", holidays=("2026-12-24", "2026-12-25"))
    # Wednesday 23 Dec 16:00 + 2 h: one hour that day, then Monday the 28th.
    assert calendar.add(ms("2026-12-23T16:00"), 2 * HOUR) == ms("2026-12-28T09:00")


def test_hours_are_local_time_of_the_zone_across_a_dst_change() -> None:
    copenhagen = BusinessCalendar.parse("mon-sun 00:00-24:00", "Europe/Copenhagen")
    start, end = (
        ms("2026-03-29T00:00", "Europe/Copenhagen"),
        ms("2026-03-30T00:00", "Europe/Copenhagen"),
    )
    assert copenhagen.open_ms(start, end) == 23 * HOUR  # the day the clocks go forward
    nine_to_five = BusinessCalendar.parse("mon-fri 09:00-17:00", "Europe/Copenhagen")
    # Monday after the change: 09:00 local is 07:00 UTC (summer time, UTC+2).
    assert nine_to_five.add(ms("2026-03-30T06:00"), HOUR) == ms("2026-03-30T08:00")


def test_several_intervals_and_wrapping_day_ranges() -> None:
    calendar = BusinessCalendar.parse("sat-mon 10:00-12:00,13:00-14:00")
    # Sunday 2026-11-29 11:30: 30 min, then 13:00-14:00, then Monday 10:00 +30 min.
    assert calendar.add(ms("2026-11-29T11:30"), 2 * HOUR) == ms("2026-11-30T10:30")


@pytest.mark.parametrize(
    ("hours", "zone", "holidays", "message"),
    [
        ("monday 08:00-17:00", "UTC", (), "days must be like"),
        ("mon-fri 8-17", "UTC", (), "is not HH:MM-HH:MM"),
        ("mon-fri 17:00-08:00", "UTC", (), "must be a range within a day"),
        ("mon-fri 08:00-17:00", "Mars/Olympus", (), "not a known IANA zone"),
        ("mon-fri 08:00-17:00", "UTC", ("24/12/2026",), "holidays"),
        (" ; ", "UTC", (), "no open time"),
    ],
)
def test_a_bad_schedule_is_refused_naming_what_is_wrong(
    hours: str, zone: str, holidays: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CalendarError, match=message):
        BusinessCalendar.parse(hours, zone, holidays)


def open_minutes_by_hand(start_ms: int, end_ms: int) -> int:
    """Independent of the calendar: minute by minute, is it Mon-Fri 08:00-17:00 UTC?"""
    total = 0
    for minute in range(start_ms // 60_000, end_ms // 60_000):
        moment = datetime.fromtimestamp(minute * 60, UTC)
        total += moment.weekday() < 5 and 8 <= moment.hour < 17
    return total


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 14 * 24 * 60).map(lambda m: ms("2026-11-23T00:00") + m * 60_000),
    st.integers(0, 30 * 60),
)
def test_adding_open_time_agrees_with_counting_minutes(start_ms: int, minutes: int) -> None:
    due = OFFICE.add(start_ms, minutes * 60_000)
    assert OFFICE.open_ms(start_ms, due) == minutes * 60_000
    assert open_minutes_by_hand(start_ms, due) == minutes
    # Due at the first instant the target is reached: not a minute of closed time later.
    if minutes:
        assert open_minutes_by_hand(start_ms, due - 60_000) == minutes - 1


def test_sla_clock_under_business_hours_breaches_at_the_business_deadline() -> None:
    policy = SlaPolicy(calendar=OFFICE)
    state = TicketState("T1")
    add_event(state, created("T1", ms("2026-11-27T16:00"), priority="high"))  # 4 h target
    [clock] = [c for c in derive(state, policy, str).clocks if c.sla == FIRST_RESPONSE]
    assert clock.deadline_ms == ms("2026-11-30T11:00")
    # Answered Monday at 10:30: in time by business hours (18.5 h by the wall clock).
    add_event(
        state,
        ticket_event("ticket.replied", "T1", ms("2026-11-30T10:30"), author="agent", public=True),
    )
    met = [
        c for c in derive(state, policy, str).contributions if c.name == "sla:first_response:met"
    ]
    assert [c.at_ms for c in met] == [ms("2026-11-30T10:30")]


def test_current_priority_rule_moves_the_deadline_with_a_priority_change() -> None:
    state = TicketState("T1")
    add_event(state, created("T1", ms("2026-11-24T09:00"), priority="low"))  # 48 h
    add_event(
        state,
        ticket_event("ticket.priority_changed", "T1", ms("2026-11-24T09:10"), priority="urgent"),
    )

    def deadline(rule: str) -> int:
        view = derive(state, SlaPolicy(priority_rule=rule), str)
        return next(c.deadline_ms for c in view.clocks if c.sla == FIRST_RESPONSE)

    assert deadline("initial") == ms("2026-11-26T09:00")
    assert deadline("current") == ms("2026-11-24T10:00")
