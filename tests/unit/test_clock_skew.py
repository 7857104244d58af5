"""Producers' clocks: minutes ahead are within the bound; far in the future is a
rejection (future_timestamp), which must not move the watermark and close windows early."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream.codec import HELPDESK_TYPES, Decoder, Reason, Rejection
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from tests.scrape import scrape
from tests.unit.helpers import MINUTE, T0, created

HOUR = 60 * MINUTE


def body(at_ms: int) -> bytes:
    return orjson.dumps(created("T1", at_ms).body)


def test_the_decoder_bounds_event_time_by_the_clock_it_is_given() -> None:
    decoder = Decoder(HELPDESK_TYPES, max_future_ms=HOUR)
    assert not isinstance(decoder.decode(body(T0 + 59 * MINUTE), now_ms=T0), Rejection)
    assert not isinstance(decoder.decode(body(T0 + HOUR), now_ms=T0), Rejection)
    rejected = decoder.decode(body(T0 + HOUR + 1), now_ms=T0)
    assert isinstance(rejected, Rejection)
    assert rejected.reason is Reason.FUTURE_TIMESTAMP
    assert "$.occurred_at" in rejected.detail
    assert "3,600 s after the worker's clock" in rejected.detail
    # Without a clock (or a bound) there is nothing to compare with.
    assert not isinstance(decoder.decode(body(T0 + 100 * HOUR)), Rejection)
    unbounded = Decoder(HELPDESK_TYPES)
    assert not isinstance(unbounded.decode(body(T0 + 100 * HOUR), now_ms=T0), Rejection)


def test_settings_take_a_duration_or_off() -> None:
    assert Settings().max_future_ms == HOUR
    assert Settings(max_future="5m").max_future_ms == 5 * MINUTE
    assert Settings(max_future="off").max_future_ms is None
    with pytest.raises(ValueError, match="soon"):
        Settings(max_future="soon")


def test_a_far_future_event_is_rejected_and_closes_no_window() -> None:
    runtime = WorkerRuntime(
        Settings(live=False, windows=("1m", "1h"), grace="10m"), CollectorRegistry()
    )
    tickets: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    now = T0 + 5 * MINUTE
    # A producer 3 minutes ahead: accepted.
    ahead = runtime.process_helpdesk(body(now + 3 * MINUTE), 0, tickets, scopes, now_ms=now)
    assert ahead.rejection is None
    mark = runtime.partition(0).event_watermark_ms()
    # A clock a year ahead: the DLQ, with the reason; the watermark stays.
    event = created("T2", now + 365 * 24 * HOUR)
    far = runtime.process_helpdesk(orjson.dumps(event.body), 0, tickets, scopes, now_ms=now)
    assert far.rejection is not None
    assert far.rejection.reason is Reason.FUTURE_TIMESTAMP
    assert runtime.partition(0).event_watermark_ms() == mark
    assert "T2" not in tickets
    metrics = scrape(runtime.registry)
    rejected = {
        labels["reason"]: value for labels, value in metrics["kpistream_events_rejected_total"]
    }
    assert rejected == {"future_timestamp": 1.0}
