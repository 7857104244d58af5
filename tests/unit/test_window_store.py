"""The window store behind GET /kpis/windows: compaction, tombstones, bound, queries."""

from __future__ import annotations

import random
import tracemalloc
from typing import Any

import orjson
import pytest

from stream.export.kpi_feed import apply_record
from stream.export.window_store import WindowStore, split_key
from stream.kpi.catalogue import KpiValue, message
from stream.kpi.sketch import QuantileSketch
from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms

T0 = parse_rfc3339_ms("2026-11-24T09:00:00Z")
MINUTE = 60_000
HOUR = 60 * MINUTE
BILLING = {"queue": "billing", "priority": "urgent"}


def window(
    kpi: str = "first_response_time",
    size_ms: int = MINUTE,
    start_ms: int = T0,
    dims: dict[str, str] | None = None,
    revision: int = 0,
    final: bool = False,
    values: dict[str, Any] | None = None,
    sketches: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    value = KpiValue(kpi, dims or {}, values or {"count": 1}, sketches or {})
    return message(
        value, size_ms, start_ms, revision, final, format_rfc3339_ms(T0), format_rfc3339_ms
    )


def store_of(*items: tuple[str, dict[str, Any]], kept: int = 1440) -> WindowStore:
    store = WindowStore(kept)
    for key, body in items:
        store.apply(key, body)
    return store


def starts(found: list[dict[str, Any]]) -> list[str]:
    return [m["window_start"] for m in found]


def test_keys_split_into_series_and_start() -> None:
    key, _ = window(dims=BILLING, start_ms=T0 + MINUTE)
    assert split_key(key) == (
        "first_response_time",
        "1m",
        "queue=billing,priority=urgent",
        T0 + MINUTE,
    )
    assert split_key("first_response_time/1m|all|yesterday") is None
    assert split_key("no slash or bars") is None


def test_latest_revision_of_a_key_wins() -> None:
    store = store_of(window(revision=0), window(revision=1), window(revision=2, final=True))
    assert len(store) == 1
    [only] = store.query()
    assert only["revision"] == 2
    assert only["is_final"] is True


def test_stored_message_comes_back_unchanged() -> None:
    key, body = window(
        dims=BILLING,
        values={"count": 3, "sum_seconds": 410.5, "p50_seconds": 90.1, "p90_seconds": None},
        sketches={
            "first_response_seconds": {"a": 0.01, "k": [1, 5], "c": [2, 1], "z": 0, "s": 1.5}
        },
    )
    assert store_of((key, body)).query() == [orjson.loads(orjson.dumps(body))]


def test_tombstone_deletes_the_key_only() -> None:
    first, second = window(start_ms=T0), window(start_ms=T0 + MINUTE)
    store = store_of(first, second)
    store.apply(first[0], None)
    assert starts(store.query()) == ["2026-11-24T09:01:00.000Z"]
    store.apply(second[0], None)
    assert len(store) == 0
    assert store.query() == []
    store.apply(second[0], None)  # a tombstone for nothing: no change
    store.apply(*first)  # the key may come back
    assert starts(store.query()) == ["2026-11-24T09:00:00.000Z"]


def test_each_series_keeps_its_newest_windows() -> None:
    store = WindowStore(kept=3)
    for i in (0, 1, 2, 3, 4):
        store.apply(*window(start_ms=T0 + i * MINUTE))
        store.apply(*window(start_ms=T0 + i * MINUTE, dims=BILLING))
    assert len(store) == 6
    everything = store.query()
    assert starts(everything) == [format_rfc3339_ms(T0 + i * MINUTE) for i in (2, 2, 3, 3, 4, 4)]
    # Older than every kept window of a full series: dropped; a new one pushes one out.
    store.apply(*window(start_ms=T0))
    assert len(store) == 6
    store.apply(*window(start_ms=T0 + 10 * MINUTE))
    all_dims = store.query(queue=None, priority=None)
    assert [m["window_start"] for m in all_dims if not m["dimensions"]] == [
        format_rfc3339_ms(T0 + i * MINUTE) for i in (3, 4, 10)
    ]
    # Late in between the kept ones: kept, and the oldest goes.
    store.apply(*window(start_ms=T0 + 7 * MINUTE, dims=BILLING))
    assert starts(store.query(queue="billing")) == [
        format_rfc3339_ms(T0 + i * MINUTE) for i in (3, 4, 7)
    ]


def test_query_filters_by_kpi_window_and_dimensions() -> None:
    store = store_of(
        window(),
        window(dims=BILLING),
        window(dims={"queue": "returns", "priority": "low"}),
        window("csat", dims=BILLING),
        window(size_ms=HOUR),
        window("value_settled", dims={"currency": "EUR"}),
        window("value_settled", dims={**BILLING, "currency": "USD"}),
    )
    kpis = [(m["kpi"], m["window"], m["dimensions"]) for m in store.query(kpi={"csat"})]
    assert kpis == [("csat", "1m", BILLING)]
    assert {m["window"] for m in store.query(window={"1h"})} == {"1h"}
    assert len(store.query(window={"1m", "1h"})) == 7
    assert [m["kpi"] for m in store.query(queue="billing")] == [
        "csat",
        "first_response_time",
        "value_settled",
    ]
    assert [m["dimensions"] for m in store.query(kpi={"first_response_time"}, priority="low")] == [
        {"queue": "returns", "priority": "low"}
    ]
    assert [m["dimensions"] for m in store.query(currency="EUR")] == [{"currency": "EUR"}]
    assert store.query(queue="billing", currency="EUR") == []
    assert store.query(kpi={"nps"}) == []


def test_time_range_is_half_open_on_window_start() -> None:
    store = store_of(*(window(start_ms=T0 + i * MINUTE) for i in range(5)))
    found = store.query(from_ms=T0 + MINUTE, to_ms=T0 + 3 * MINUTE)
    assert starts(found) == ["2026-11-24T09:01:00.000Z", "2026-11-24T09:02:00.000Z"]
    assert len(store.query(from_ms=T0 + MINUTE + 1)) == 3
    assert len(store.query(to_ms=T0)) == 0
    assert len(store.query(to_ms=T0 + 1)) == 1


def test_final_only_and_limit_keep_the_order() -> None:
    store = store_of(
        window(start_ms=T0 + 2 * MINUTE, final=False),
        window(start_ms=T0, final=True),
        window(start_ms=T0 + MINUTE, final=True, dims=BILLING),
        window(start_ms=T0 + MINUTE, final=True),
        window(start_ms=T0 + MINUTE, final=True, size_ms=HOUR),
    )
    found = store.query(final_only=True)
    assert [(m["window_start"][11:16], m["window"], m["dimensions"]) for m in found] == [
        ("09:00", "1m", {}),
        ("09:01", "1m", {}),  # "all" sorts before "queue=..."
        ("09:01", "1m", BILLING),
        ("09:01", "1h", {}),  # then the longer window
    ]
    assert len(store.query()) == 5
    assert starts(store.query(limit=2)) == ["2026-11-24T09:00:00.000Z", "2026-11-24T09:01:00.000Z"]
    assert store.query(limit=0) == []


def test_records_as_kafka_holds_them() -> None:
    store = WindowStore()
    key, body = window()
    apply_record(store, key.encode(), orjson.dumps(body))
    apply_record(store, None, orjson.dumps(body))
    apply_record(store, b"\xff\xfe", orjson.dumps(body))
    apply_record(store, key.encode(), b"{not json")
    apply_record(store, b"not a window key", orjson.dumps(body))
    apply_record(store, key.encode(), b"[1, 2]")
    assert len(store) == 1
    assert store.skipped == 5
    apply_record(store, key.encode(), None)
    assert len(store) == 0


def test_kept_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WindowStore(0)


def latency_window(i: int) -> tuple[str, dict[str, Any]]:
    rnd = random.Random(i)
    sketch = QuantileSketch(0.01)
    for _ in range(10):
        sketch.add(rnd.uniform(10, 3600))
    values = {"count": sketch.count, "sum_seconds": sketch.sum}
    values |= {f"p{q}_seconds": sketch.quantile(q / 100) for q in (50, 90, 99)}
    return window(
        dims=BILLING,
        start_ms=T0 + i * MINUTE,
        final=True,
        values=values,
        sketches={"first_response_seconds": sketch.to_dict()},
    )


def test_memory_per_message_stays_near_its_json_size() -> None:
    # The figure in stream/export/window_store.py's docstring comes from here.
    n = 5000
    items = [latency_window(i) for i in range(n)]
    json_bytes = sum(len(orjson.dumps(body)) for _, body in items) / n
    store = WindowStore(kept=n)
    tracemalloc.start()
    try:
        for key, body in items:
            store.apply(key, body)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_message = used / n
    assert len(store) == n
    # Measured: 570 B of JSON, 730 B stored. orjson's own result would keep a 4 KB buffer.
    assert json_bytes < per_message < json_bytes + 400
