from hypothesis import given
from hypothesis import strategies as st

from stream.kpi.windows import (
    format_duration_ms,
    is_closed,
    parse_duration_ms,
    window_end_ms,
    window_start_ms,
)

SIZES = st.sampled_from([1000, 60_000, 3_600_000, 86_400_000])
TIMES = st.integers(min_value=-(10**13), max_value=10**13)


@given(TIMES, SIZES)
def test_timestamp_lies_in_its_half_open_window(ts: int, size: int) -> None:
    start = window_start_ms(ts, size)
    assert start <= ts < window_end_ms(start, size)
    assert start % size == 0


@given(TIMES, SIZES)
def test_window_end_belongs_to_the_next_window(ts: int, size: int) -> None:
    start = window_start_ms(ts, size)
    assert window_start_ms(window_end_ms(start, size), size) == start + size


def test_daily_window_is_the_utc_calendar_day() -> None:
    # 2016-03-01T23:59:59.999Z and 2016-03-02T00:00:00Z fall in different days.
    assert window_start_ms(1456876799999, 86_400_000) == 1456790400000
    assert window_start_ms(1456876800000, 86_400_000) == 1456876800000


def test_window_closes_exactly_when_watermark_reaches_its_end() -> None:
    assert not is_closed(0, 60_000, 59_999)
    assert is_closed(0, 60_000, 60_000)


def test_durations_parse_and_format_round_trip() -> None:
    assert parse_duration_ms("1m") == 60_000
    assert parse_duration_ms("10m") == 600_000
    assert parse_duration_ms("250ms") == 250
    assert format_duration_ms(3_600_000) == "1h"
    assert format_duration_ms(90_000) == "90s"
    for text in ("1m", "1h", "1d", "15s"):
        assert format_duration_ms(parse_duration_ms(text)) == text


def test_bad_duration_names_the_text() -> None:
    import pytest

    with pytest.raises(ValueError, match="'5 minutes'"):
        parse_duration_ms("5 minutes")
    with pytest.raises(ValueError, match="greater than zero"):
        parse_duration_ms("0s")
