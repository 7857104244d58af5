"""`kpi indicator set`: the period shortcuts, the value, and the worker's validation before
anything is sent (stream/local/indicator_event.py; no broker: --dry-run)."""

from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from stream.cli import app
from stream.codec import INDICATOR_TYPES, Decoder
from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from stream.local.indicator_event import (
    IndicatorInputError,
    build_indicator_event,
    calendar_period,
    checked_message,
    parse_value,
)

NOW = parse_rfc3339_ms("2026-12-02T08:00:00Z")
DECODER = Decoder(INDICATOR_TYPES)


def utc(text: str) -> int:
    return parse_rfc3339_ms(text)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2028-02", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),
        ("2026-Q1", "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        ("2026-Q3", "2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z"),
        ("2026-Q4", "2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2026-q2", "2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z"),
    ],
)
def test_period_shortcuts_are_calendar_months_and_quarters_in_utc(
    text: str, start: str, end: str
) -> None:
    assert calendar_period(text) == (utc(start), utc(end))


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-Q5", "2026-Q0", "26-11", "2026", ""])
def test_other_period_texts_are_errors(text: str) -> None:
    with pytest.raises(IndicatorInputError, match="--period"):
        calendar_period(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1200", 1200), ("0.042", 0.042), ("-3.5", -3.5), ("+7", 7), ("1e3", 1000.0), (" 2 ", 2)],
)
def test_values(text: str, value: float) -> None:
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize("text", ["abc", "", "nan", "inf", "12%", "1_000", "1,5", "0x10", "1e999"])
def test_bad_values(text: str) -> None:
    with pytest.raises(IndicatorInputError, match="VALUE"):
        parse_value(text)


def test_the_event_is_what_the_worker_accepts() -> None:
    event = build_indicator_event(
        "employee_turnover",
        "0.042",
        "ratio",
        now_ms=NOW,
        period="2026-11",
        source="HR system",
        event_id="cli-1",
    )
    assert event == {
        "event_id": "cli-1",
        "type": "indicator.reported",
        "occurred_at": "2026-12-02T08:00:00.000Z",
        "name": "employee_turnover",
        "value": 0.042,
        "unit": "ratio",
        "period_start": "2026-11-01T00:00:00.000Z",
        "period_end": "2026-12-01T00:00:00.000Z",
        "source": "HR system",
    }
    message = checked_message(event, DECODER)
    assert message.key == b"employee_turnover"
    assert orjson.loads(message.value) == event
    assert message.event.occurred_at_ms == NOW


def test_explicit_bounds_are_kept_as_given() -> None:
    event = build_indicator_event(
        "cash_flow",
        "-1200",
        "EUR",
        now_ms=NOW,
        period_start="2026-10-01T00:00:00+02:00",
        period_end="2027-01-01T00:00:00+01:00",
    )
    assert (event["period_start"], event["period_end"]) == (
        "2026-10-01T00:00:00+02:00",
        "2027-01-01T00:00:00+01:00",
    )
    assert event["value"] == -1200
    assert event["source"] == "cli"
    assert str(event["event_id"]).startswith("cli-")
    checked_message(event, DECODER)


def test_each_run_is_a_new_event_so_a_repeat_is_a_correction() -> None:
    a = build_indicator_event("x", "1", "u", now_ms=NOW, period="2026-11")
    b = build_indicator_event("x", "2", "u", now_ms=NOW + 1, period="2026-11")
    assert a["event_id"] != b["event_id"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"period": "2026-11", "period_start": "2026-11-01T00:00:00Z"}, "not both"),
        ({"period_start": "2026-11-01T00:00:00Z"}, "period is missing"),
        ({}, "period is missing"),
        (
            {"period_start": "2026-11-01T00:00:00", "period_end": "2026-12-01T00:00:00Z"},
            "--period-start: .* has no offset",
        ),
        (
            {"period_start": "2026-11-01T00:00:00Z", "period_end": "1 December"},
            "--period-end: .* is not RFC 3339",
        ),
        (
            {"period_start": "2026-02-30T00:00:00Z", "period_end": "2026-03-01T00:00:00Z"},
            "--period-start: .* is not a real date",
        ),
    ],
)
def test_period_argument_errors(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(IndicatorInputError, match=match):
        build_indicator_event("x", "1", "u", now_ms=NOW, **kwargs)  # type: ignore[arg-type]


def test_what_the_worker_would_reject_is_refused() -> None:
    backwards = build_indicator_event(
        "x",
        "1",
        "u",
        now_ms=NOW,
        period_start="2026-12-01T00:00:00Z",
        period_end="2026-11-01T00:00:00Z",
    )
    with pytest.raises(IndicatorInputError, match="would reject this report: bad_period"):
        checked_message(backwards, DECODER)
    too_long = build_indicator_event("x" * 200, "1", "u", now_ms=NOW, period="2026-11")
    with pytest.raises(IndicatorInputError, match=r"schema_violation: .*\$\.name"):
        checked_message(too_long, DECODER)


# --- the command -----------------------------------------------------------------------


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["indicator", "set", *args])
    return result.exit_code, result.output


def test_dry_run_prints_the_event_it_would_send() -> None:
    code, out = run(
        "employee_turnover", "0.042", "--unit", "ratio", "--period", "2026-11", "--dry-run"
    )
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("would send to "))
    prefix = "would send to indicators.external key=employee_turnover: "
    assert line.startswith(prefix)
    event = orjson.loads(line.removeprefix(prefix))
    assert event["period_start"] == format_rfc3339_ms(utc("2026-11-01T00:00:00Z"))
    assert event["period_end"] == "2026-12-01T00:00:00.000Z"
    assert (event["value"], event["unit"], event["source"]) == (0.042, "ratio", "cli")


def test_a_negative_value_and_a_quarter() -> None:
    code, out = run(
        "cash_flow", "-1200", "--unit", "EUR", "--period", "2026-Q4", "--source", "ERP", "--dry-run"
    )
    assert code == 0, out
    event = orjson.loads(out[out.index("{") :].splitlines()[0])
    assert event["value"] == -1200
    assert (event["period_start"], event["period_end"]) == (
        "2026-10-01T00:00:00.000Z",
        "2027-01-01T00:00:00.000Z",
    )
    assert event["source"] == "ERP"


def test_a_bad_value_exits_2_with_a_clear_message_and_sends_nothing() -> None:
    code, out = run("employee_turnover", "4.2%", "--unit", "ratio", "--period", "2026-11")
    assert code == 2
    assert "VALUE '4.2%' is not a number" in out
    assert "sent to" not in out


def test_a_bad_period_exits_2() -> None:
    code, out = run(
        "employee_turnover",
        "0.04",
        "--unit",
        "ratio",
        "--period-start",
        "2026-12-01T00:00:00Z",
        "--period-end",
        "2026-11-01T00:00:00Z",
    )
    assert code == 2
    assert "bad_period" in out
    code, out = run("employee_turnover", "0.04", "--unit", "ratio", "--period", "2026-Q5")
    assert code == 2
    assert "quarter (2026-Q4)" in out
    code, out = run("employee_turnover", "0.04", "--unit", "ratio")
    assert code == 2
    assert "period is missing" in out


def test_help_documents_the_shortcuts() -> None:
    result = CliRunner().invoke(app, ["indicator", "set", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--period 2026-11" in result.output
    assert "2026-Q4" in result.output
