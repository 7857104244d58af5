import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.kpi.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms


def test_offsets_are_applied() -> None:
    utc = parse_rfc3339_ms("2026-11-24T10:15:30.123Z")
    assert parse_rfc3339_ms("2026-11-24T12:15:30.123+02:00") == utc
    assert parse_rfc3339_ms("2026-11-24T05:15:30.123-05:00") == utc
    assert utc == 1795515330123


def test_milliseconds_are_optional_and_extra_digits_truncate() -> None:
    assert parse_rfc3339_ms("2026-11-24T10:15:30Z") % 1000 == 0
    assert parse_rfc3339_ms("2026-11-24T10:15:30.1Z") % 1000 == 100
    assert parse_rfc3339_ms("2026-11-24T10:15:30.999999999Z") % 1000 == 999


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-24T10:15:30", "no offset"),
        ("2026-11-24 10:15:30", "no offset"),
        ("2026-02-30T10:15:30Z", "not a real date"),
        ("2026-11-24T25:15:30Z", "not a real date"),
        ("yesterday", "not RFC 3339"),
        ("2026-11-24T10:15:30+25:00", "impossible offset"),
    ],
)
def test_bad_timestamps_say_why(text: str, message: str) -> None:
    with pytest.raises(TimestampError, match=message):
        parse_rfc3339_ms(text)


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_format_then_parse_is_identity(epoch_ms: int) -> None:
    assert parse_rfc3339_ms(format_rfc3339_ms(epoch_ms)) == epoch_ms


@pytest.mark.parametrize("text", ["2026-11-24T10:15:30Z\n", "٢٠٢٦-11-24T10:15:30Z"])
def test_trailing_newline_and_other_digits_are_refused(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_rfc3339_ms(text)


@given(st.integers(min_value=-30_610_224_000_000, max_value=253_402_300_799_999))
def test_the_common_spelling_parses_without_the_regex_to_the_same_instant(ms: int) -> None:
    text = format_rfc3339_ms(ms)
    assert parse_rfc3339_ms(text) == ms
    whole = ms - ms % 1000
    assert parse_rfc3339_ms(format_rfc3339_ms(whole).replace(".000Z", "Z")) == whole


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30T10:15:30Z",  # no such day
        "2026-11-24T24:00:00Z",
        "2026-11-24T23:59:60.000Z",
        "0000-01-01T00:00:00Z",
        "2026-11-24T10:15:30.1_2Z",  # int() would read these
        "2026-11-24T10:15:3 .123Z",
        "2026-11-24T10:15:+3.123Z",
        "2026-11-24T10:15:30.12\u0663Z",  # an Arabic-Indic digit
    ],
)
def test_what_the_fast_path_does_not_read_the_strict_parser_refuses(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_rfc3339_ms(text)
