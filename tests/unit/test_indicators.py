"""External indicators (stream/kpi/indicators.py): the latest report per name and period,
corrections by occurred_at, the documented rejection, and the kpi.windows.v1 message."""

from __future__ import annotations

import itertools
import json
import random
import re
from typing import Any

import fastjsonschema
import orjson
import pytest

from stream.kpi.events import Event
from stream.kpi.indicators import (
    BAD_PERIOD,
    DUPLICATE,
    MAX_IDS,
    MAX_PERIODS,
    SUPERSEDED,
    TOO_OLD,
    Change,
    IndicatorBook,
    IndicatorSeries,
    Refusal,
    change_messages,
    customer_count,
    indicator_message,
)
from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from stream.kpi.windows import format_duration_ms
from stream.schema_registry import schema_dir

DAY = 86_400_000
NOV = parse_rfc3339_ms("2026-11-01T00:00:00Z")
DEC = parse_rfc3339_ms("2026-12-01T00:00:00Z")
JAN = parse_rfc3339_ms("2027-01-01T00:00:00Z")
OCT = parse_rfc3339_ms("2026-10-01T00:00:00Z")
REPORTED = parse_rfc3339_ms("2026-12-02T08:00:00Z")
EMITTED = "2026-12-02T08:00:01.000Z"

KPI_SCHEMA = json.loads((schema_dir() / "kpi" / "kpi-window.v1.schema.json").read_text())
validate_kpi_message = fastjsonschema.compile(KPI_SCHEMA)
WINDOW = re.compile(KPI_SCHEMA["properties"]["window"]["pattern"])

_ids = itertools.count(1)


def report(
    value: float = 0.042,
    *,
    name: str = "employee_turnover",
    unit: str = "ratio",
    start: int | str = NOV,
    end: int | str = DEC,
    at_ms: int = REPORTED,
    event_id: str | None = None,
    source: str = "HR system",
) -> Event:
    event_id = event_id or f"i-{next(_ids):05d}"
    body: dict[str, Any] = {
        "event_id": event_id,
        "type": "indicator.reported",
        "occurred_at": format_rfc3339_ms(at_ms),
        "name": name,
        "value": value,
        "unit": unit,
        "period_start": start if isinstance(start, str) else format_rfc3339_ms(start),
        "period_end": end if isinstance(end, str) else format_rfc3339_ms(end),
        "source": source,
    }
    return Event(event_id, "indicator.reported", at_ms, body)


def changed(outcome: Change | Refusal) -> Change:
    assert isinstance(outcome, Change), outcome
    return outcome


def refused(outcome: Change | Refusal) -> Refusal:
    assert isinstance(outcome, Refusal), outcome
    return outcome


def held(book: IndicatorBook, name: str = "employee_turnover") -> list[tuple[int, int, Any]]:
    series = book.get(name)
    assert series is not None
    return [(r.period_start_ms, r.period_end_ms, r.value) for r in series.periods]


# --- the book ----------------------------------------------------------------------------


def test_a_first_report_is_revision_0_of_its_period() -> None:
    book = IndicatorBook()
    change = changed(book.apply(report(0.042)))
    assert change.name == "employee_turnover"
    assert not change.is_revision
    assert change.previous is None
    assert change.report.revision == 0
    assert (change.report.period_start_ms, change.report.period_end_ms) == (NOV, DEC)
    assert (change.report.unit, change.report.source) == ("ratio", "HR system")
    assert held(book) == [(NOV, DEC, 0.042)]


def test_a_duplicate_event_id_is_ignored() -> None:
    book = IndicatorBook()
    first = report(0.042, event_id="hr-1")
    changed(book.apply(first))
    again = refused(book.apply(first))
    assert again.reason == DUPLICATE
    assert not again.rejected
    # The same id with other content is still the same event: counted once.
    other = refused(book.apply(report(0.5, event_id="hr-1", at_ms=REPORTED + DAY)))
    assert other.reason == DUPLICATE
    assert held(book) == [(NOV, DEC, 0.042)]


def test_a_newer_report_of_the_period_replaces_it_as_the_next_revision() -> None:
    book = IndicatorBook()
    changed(book.apply(report(0.042, at_ms=REPORTED)))
    change = changed(book.apply(report(0.045, at_ms=REPORTED + DAY)))
    assert change.is_revision
    assert change.previous is not None
    assert change.previous.value == 0.042
    assert change.report.revision == 1
    third = changed(book.apply(report(0.046, at_ms=REPORTED + 2 * DAY)))
    assert third.report.revision == 2
    assert held(book) == [(NOV, DEC, 0.046)]


def test_an_older_report_arriving_later_does_not_replace_the_newer() -> None:
    book = IndicatorBook()
    changed(book.apply(report(0.045, at_ms=REPORTED + DAY)))
    late = refused(book.apply(report(0.042, at_ms=REPORTED)))
    assert late.reason == SUPERSEDED
    assert not late.rejected
    assert held(book) == [(NOV, DEC, 0.045)]
    series = book.get("employee_turnover")
    assert series is not None
    assert series.periods[0].revision == 0


def test_a_tie_on_occurred_at_goes_to_the_larger_event_id() -> None:
    book = IndicatorBook()
    changed(book.apply(report(1.0, event_id="b")))
    assert refused(book.apply(report(2.0, event_id="a"))).reason == SUPERSEDED
    assert changed(book.apply(report(3.0, event_id="c"))).report.revision == 1
    assert held(book) == [(NOV, DEC, 3.0)]


def test_the_outcome_does_not_depend_on_arrival_order() -> None:
    events = [
        report(0.040, at_ms=REPORTED, event_id="x1"),
        report(0.041, at_ms=REPORTED + DAY, event_id="x2"),
        report(0.039, at_ms=REPORTED + DAY, event_id="x0"),
        report(7.0, name="cash_flow", unit="EUR", start=OCT, end=JAN, event_id="c1"),
        report(0.050, start=DEC, end=JAN, event_id="y1"),
    ]
    finals = set()
    for order in itertools.permutations(events):
        book = IndicatorBook()
        for event in [*order, order[0]]:  # and one repeat
            book.apply(event)
        finals.add(
            json.dumps(
                {
                    n: [(r["period_start_ms"], r["value"], r["event_id"]) for r in e["periods"]]
                    for n, e in book.to_dict().items()
                },
                sort_keys=True,
            )
        )
    assert len(finals) == 1
    (final,) = finals
    assert json.loads(final)["employee_turnover"] == [[DEC, 0.05, "y1"], [NOV, 0.041, "x2"]]


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [
        (DEC, NOV, "is not after"),
        (NOV, NOV, "is not after"),
        ("2026-02-30T00:00:00Z", DEC, "not a real date"),
        ("0999-01-01T00:00:00Z", DEC, "1000..9999"),
        (NOV, "9999-12-31T23:00:00-05:00", "1000..9999"),  # year 10000 in UTC
    ],
)
def test_a_report_without_a_real_period_is_rejected(start: Any, end: Any, why: str) -> None:
    book = IndicatorBook()
    outcome = refused(book.apply(report(start=start, end=end)))
    assert outcome.reason == BAD_PERIOD
    assert outcome.rejected
    assert why in outcome.detail
    assert str(outcome).startswith("bad_period: ")
    assert len(book) == 0


def test_a_rejected_report_does_not_use_up_its_event_id() -> None:
    book = IndicatorBook()
    assert refused(book.apply(report(start=DEC, end=NOV, event_id="e"))).rejected
    changed(book.apply(report(event_id="e")))


def test_periods_of_different_lengths_are_different_periods() -> None:
    book = IndicatorBook()
    changed(book.apply(report(0.04, start=DEC, end=JAN)))  # December
    changed(book.apply(report(0.12, start=OCT, end=JAN)))  # Q4
    # Newest: the latest end, then the later start (December before Q4).
    assert held(book) == [(DEC, JAN, 0.04), (OCT, JAN, 0.12)]
    series = book.get("employee_turnover")
    newest = series.newest() if series is not None else None
    assert newest is not None
    assert newest.value == 0.04


def test_an_offset_period_is_the_same_instant_in_utc() -> None:
    book = IndicatorBook()
    changed(book.apply(report(1.0, start="2026-11-01T01:00:00+01:00", end=DEC, at_ms=REPORTED)))
    change = changed(book.apply(report(2.0, start=NOV, end=DEC, at_ms=REPORTED + 1)))
    assert change.is_revision


def test_a_name_keeps_its_newest_24_periods() -> None:
    book = IndicatorBook()
    months = [
        parse_rfc3339_ms(f"{2024 + m // 12}-{m % 12 + 1:02d}-01T00:00:00Z") for m in range(31)
    ]
    periods = list(itertools.pairwise(months))  # 30 monthly periods, 2024-01 .. 2026-06
    evicted = []
    for start, end in periods:
        change = changed(book.apply(report(float(start), start=start, end=end)))
        if change.evicted is not None:
            evicted.append(change.evicted.period_start_ms)
    assert MAX_PERIODS == 24
    assert [p[0] for p in held(book)] == [s for s, _ in reversed(periods[-24:])]
    assert evicted == [s for s, _ in periods[:6]]
    # A report of a period older than the 24 kept would be evicted at once: ignored.
    old = refused(book.apply(report(start=periods[0][0], end=periods[0][1])))
    assert old.reason == TOO_OLD
    assert not old.rejected
    # A correction of a kept period still works.
    s, e = periods[-24]
    assert changed(book.apply(report(1.0, start=s, end=e))).report.revision == 1


def test_event_ids_are_bounded_and_repeats_stay_harmless_past_the_bound() -> None:
    series = IndicatorSeries("employee_turnover")
    first = report(1.0, at_ms=REPORTED, event_id="first")
    changed(series.apply(first))
    for n in range(MAX_IDS + 10):
        series.apply(report(1.0, at_ms=REPORTED - 1 - n, event_id=f"old-{n:04d}"))
    assert len(series.ids) == MAX_IDS
    assert "first" not in series.ids
    # Forgotten as an id, the repeat still changes nothing: it is not newer than itself.
    assert refused(series.apply(first)).reason == SUPERSEDED
    assert series.periods[0].revision == 0


def test_the_book_round_trips_through_plain_json_and_carries_on() -> None:
    book = IndicatorBook()
    changed(book.apply(report(0.042, event_id="a")))
    changed(book.apply(report(0.045, event_id="b", at_ms=REPORTED + 1)))
    changed(book.apply(report(1200, name="customer_count", unit="customers", event_id="c")))
    table = {name: orjson.loads(orjson.dumps(book.entry(name))) for name in book.to_dict()}
    again = IndicatorBook.from_dict({**table, "deleted": None})
    assert again.to_dict() == book.to_dict()
    assert refused(again.apply(report(0.045, event_id="b"))).reason == DUPLICATE
    assert changed(again.apply(report(0.05, at_ms=REPORTED + 2))).report.revision == 2
    count = again.get("customer_count")
    assert count is not None
    assert count.periods[0].value == 1200
    assert isinstance(count.periods[0].value, int)
    assert IndicatorSeries.from_dict(table["employee_turnover"]).to_dict() == (
        book.entry("employee_turnover")
    )


# --- customer_count (H8 divides by it) --------------------------------------------------


def test_customer_count_is_the_latest_report_whose_period_contains_the_time() -> None:
    book = IndicatorBook()
    assert customer_count(book, NOV) is None

    def cc(value: int, start: int, end: int, at_ms: int) -> Event:
        return report(
            value, name="customer_count", unit="customers", start=start, end=end, at_ms=at_ms
        )

    changed(book.apply(cc(1200, NOV, DEC, REPORTED)))
    assert customer_count(book, NOV) == 1200
    assert customer_count(book, DEC - 1) == 1200
    assert customer_count(book, DEC) is None  # the end is exclusive
    assert customer_count(book, NOV - 1) is None
    # An overlapping quarter reported later wins where both contain the time.
    changed(book.apply(cc(1300, OCT, JAN, REPORTED + DAY)))
    assert customer_count(book, NOV + DAY) == 1300
    assert customer_count(book, DEC + DAY) == 1300
    # ... and a correction of November reported after that wins in November.
    changed(book.apply(cc(1250, NOV, DEC, REPORTED + 2 * DAY)))
    assert customer_count(book, NOV + DAY) == 1250
    assert customer_count(book, OCT) == 1300
    # Other names are not customer counts.
    changed(book.apply(report(5.0, start=NOV - 100 * DAY, end=JAN + 100 * DAY)))
    assert customer_count(book, NOV - 50 * DAY) is None


# --- the kpi.windows.v1 message -----------------------------------------------------------


def test_the_message_is_a_final_kpi_window_message_keyed_by_name_unit_and_start() -> None:
    key, body = indicator_message("employee_turnover", "ratio", NOV, DEC, 0.042, 0, EMITTED)
    validate_kpi_message(body)
    assert (
        key == "external_indicator/30d|name=employee_turnover,unit=ratio|2026-11-01T00:00:00.000Z"
    )
    assert body == {
        "kpi": "external_indicator",
        "window": "30d",
        "window_start": "2026-11-01T00:00:00.000Z",
        "window_end": "2026-12-01T00:00:00.000Z",
        "dimensions": {"name": "employee_turnover", "unit": "ratio"},
        "revision": 0,
        "is_final": True,
        "values": {"value": 0.042},
        "emitted_at": EMITTED,
        "schema_version": 1,
    }


@pytest.mark.parametrize(
    ("start", "end", "window"),
    [
        (OCT, NOV, "31d"),
        (OCT, JAN, "92d"),
        (NOV, NOV + 36 * 3_600_000, "36h"),
        (NOV, NOV + 1500, "1500ms"),
        (NOV, NOV + 1, "1ms"),
        (NOV, NOV + 90 * 60_000, "90m"),
        (
            parse_rfc3339_ms("1000-01-01T00:00:00Z"),
            parse_rfc3339_ms("9999-12-31T23:59:59.999Z"),
            None,
        ),
    ],
)
def test_the_window_is_the_period_length(start: int, end: int, window: str | None) -> None:
    key, body = indicator_message("cash_flow", "EUR", start, end, -1200, 3, EMITTED)
    validate_kpi_message(body)
    if window is not None:
        assert body["window"] == window
    assert body["revision"] == 3
    assert body["values"] == {"value": -1200}
    assert key.startswith(f"external_indicator/{body['window']}|name=cash_flow,unit=EUR|")
    assert (parse_rfc3339_ms(body["window_start"]), parse_rfc3339_ms(body["window_end"])) == (
        start,
        end,
    )


def test_any_period_length_gives_a_valid_window_text() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        size = rng.choice([rng.randrange(1, 10**4), rng.randrange(1, 10**13)])
        assert WINDOW.fullmatch(format_duration_ms(size)), size


def test_a_report_from_the_book_makes_a_valid_message() -> None:
    book = IndicatorBook()
    first = changed(book.apply(report(1200, name="customer_count", unit="customers")))
    ((key, body),) = change_messages(first, EMITTED)
    assert body is not None
    validate_kpi_message(body)
    assert (
        key == "external_indicator/30d|name=customer_count,unit=customers|2026-11-01T00:00:00.000Z"
    )
    assert body["values"] == {"value": 1200}
    assert orjson.dumps(body["values"]) == b'{"value":1200}'  # a count stays an integer


def test_a_correction_is_the_next_revision_of_the_same_key() -> None:
    book = IndicatorBook()
    ((key0, body0),) = change_messages(changed(book.apply(report(0.042))), EMITTED)
    fix = changed(book.apply(report(0.045, at_ms=REPORTED + DAY)))
    ((key1, body1),) = change_messages(fix, EMITTED)
    assert key1 == key0
    assert body0 is not None
    assert body1 is not None
    assert (body0["revision"], body1["revision"]) == (0, 1)
    assert body1["values"] == {"value": 0.045}
    assert body1["is_final"] is True


def test_a_correction_that_changes_the_unit_tombstones_the_old_key() -> None:
    book = IndicatorBook()
    ((old_key, _),) = change_messages(changed(book.apply(report(4.2, unit="percent"))), EMITTED)
    fix = changed(book.apply(report(0.042, unit="ratio", at_ms=REPORTED + DAY)))
    (tomb, (new_key, body)) = change_messages(fix, EMITTED)
    assert tomb == (old_key, None)
    assert "unit=percent" in old_key
    assert "unit=ratio" in new_key
    assert body is not None
    validate_kpi_message(body)
    assert body["revision"] == 1
