import pytest

from stream.export.api import (
    KpiQuery,
    QueryError,
    WindowsQuery,
    kpis_json,
    parse_query,
    parse_windows_query,
    windows_json,
)
from stream.export.window_store import WindowStore
from stream.kpi.catalogue import KpiValue, message
from stream.kpi.partition import PartitionKpis
from stream.kpi.snapshot import build_snapshot
from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms

WINDOWS = ("1m", "1h")


def test_no_parameters_ask_for_everything() -> None:
    assert parse_query({}, WINDOWS) == KpiQuery()


@pytest.mark.parametrize(
    ("params", "parameter", "text"),
    [
        ({"kpi": "nps_of_mars"}, "kpi", "nps_of_mars"),
        ({"window": "5m"}, "window", "5m"),
        ({"priority": "critical"}, "priority", "critical"),
        ({"limit": "3"}, "limit", "unknown parameter"),
    ],
)
def test_bad_parameters_name_themselves(params: dict, parameter: str, text: str) -> None:
    with pytest.raises(QueryError, match=text) as caught:
        parse_query(params, WINDOWS)
    assert caught.value.parameter == parameter


def test_filters_apply_to_every_kpi() -> None:
    part = PartitionKpis(window_sizes_ms=(60_000,), grace_ms=0)
    part.active.update({("billing", "urgent", "new"): 2, ("returns", "low", "open"): 1})
    snap = build_snapshot({0: part}, now_ms=None)
    query = parse_query({"kpi": "tickets_active", "priority": "urgent"}, WINDOWS)
    body = kpis_json(snap, query)
    assert body["tickets_active"] == [
        {"queue": "billing", "priority": "urgent", "status": "new", "count": 2}
    ]
    assert "sla" not in body
    assert "first_response_windows" not in body


# --- GET /kpis/windows ---------------------------------------------------------------
def test_windows_query_defaults() -> None:
    assert parse_windows_query({}, WINDOWS) == WindowsQuery()
    assert WindowsQuery().limit == 1000
    assert not WindowsQuery().final_only


def test_windows_query_reads_every_parameter() -> None:
    query = parse_windows_query(
        {
            "kpi": "first_response_time, csat",
            "window": "1m",
            "from": "2026-11-24T10:00:00+01:00",
            "to": "1795514400000",
            "queue": "billing",
            "priority": "urgent",
            "currency": "EUR",
            "final": "TRUE",
            "limit": "10000",
        },
        WINDOWS,
    )
    assert query == WindowsQuery(
        kpis=frozenset({"first_response_time", "csat"}),
        windows=frozenset({"1m"}),
        from_ms=parse_rfc3339_ms("2026-11-24T09:00:00Z"),
        to_ms=1795514400000,
        queue="billing",
        priority="urgent",
        currency="EUR",
        final_only=True,
        limit=10000,
    )
    assert not parse_windows_query({"final": "false"}, WINDOWS).final_only


@pytest.mark.parametrize(
    ("params", "parameter", "text"),
    [
        ({"kpi": "first_response"}, "kpi", "first_response"),  # a /kpis name, not a window KPI
        ({"kpi": "csat,nps_of_mars"}, "kpi", "nps_of_mars"),
        ({"window": "5m"}, "window", "5m"),
        ({"from": "2026-11-24T09:00:00"}, "from", "neither RFC 3339"),
        ({"from": "--5"}, "from", "neither RFC 3339"),
        ({"to": "yesterday"}, "to", "yesterday"),
        ({"from": "2026-11-24T09:00:00Z", "to": "2026-11-24T09:00:00Z"}, "to", "later"),
        ({"priority": "critical"}, "priority", "critical"),
        ({"final": "yes"}, "final", "yes"),
        ({"limit": "0"}, "limit", "between 1 and 10000"),
        ({"limit": "10001"}, "limit", "between 1 and 10000"),
        ({"limit": "-1"}, "limit", "not an integer"),
        ({"limit": "ten"}, "limit", "not an integer"),
        ({"dims": "all"}, "dims", "unknown parameter"),
    ],
)
def test_bad_windows_parameters_name_themselves(params: dict, parameter: str, text: str) -> None:
    with pytest.raises(QueryError, match=text) as caught:
        parse_windows_query(params, WINDOWS)
    assert caught.value.parameter == parameter


def _window(start_ms: int, final: bool) -> tuple[str, dict]:
    value = KpiValue("first_response_time", {}, {"count": 1}, {})
    return message(value, 60_000, start_ms, 1, final, "2026-11-24T12:00:00.000Z", format_rfc3339_ms)


def test_windows_json_says_when_it_is_truncated() -> None:
    store = WindowStore()
    t0 = parse_rfc3339_ms("2026-11-24T09:00:00Z")
    for i in range(3):
        store.apply(*_window(t0 + i * 60_000, final=i < 2))
    body = windows_json(store, parse_windows_query({"limit": "2"}, WINDOWS))
    assert body["count"] == 2
    assert body["truncated"] is True
    assert [w["window_start"] for w in body["windows"]] == [
        "2026-11-24T09:00:00.000Z",
        "2026-11-24T09:01:00.000Z",
    ]
    body = windows_json(store, parse_windows_query({"final": "true", "limit": "2"}, WINDOWS))
    assert (body["count"], body["truncated"]) == (2, False)
    query = parse_windows_query({"from": str(t0 + 60_000), "window": "1m"}, WINDOWS)
    assert windows_json(store, query)["count"] == 2


def _local_answer(partition: int, active: dict, latencies: list[float]) -> dict:
    """What one worker answers with scope=local: its partitions, with sketches."""
    from stream.kpi.partition import DimsAgg, FinalWindow
    from stream.kpi.sketch import QuantileSketch

    part = PartitionKpis(window_sizes_ms=(60_000,), grace_ms=0)
    part.active.update(active)
    sketch = QuantileSketch()
    for value in latencies:
        sketch.add(value)
    part.final_through_ms = 120_000
    agg = DimsAgg(sketches={"first_response_seconds": sketch})
    part.recent_final[60_000] = [FinalWindow(60_000, 60_000, {("billing", "high"): agg})]
    snap = build_snapshot({partition: part}, now_ms=None)
    return kpis_json(snap, parse_query({"scope": "local"}, WINDOWS), sketches=True)


def test_answers_of_several_workers_merge_counts_and_sketches() -> None:
    from stream.export.api import merge_answers

    a = _local_answer(0, {("billing", "high", "new"): 2}, [10.0, 20.0, 30.0])
    b = _local_answer(1, {("billing", "high", "new"): 1, ("returns", "low", "open"): 4}, [40.0])
    merged = merge_answers([a, b], unreachable=["http://127.0.0.1:6067"])
    assert merged["partitions"] == [0, 1]
    assert merged["tickets_active"] == [
        {"queue": "billing", "priority": "high", "status": "new", "count": 3},
        {"queue": "returns", "priority": "low", "status": "open", "count": 4},
    ]
    [minute] = merged["first_response_windows"]
    assert (minute["start_ms"], minute["count"], minute["complete"]) == (60_000, 4, True)
    # The median of the four values, not an average of the two workers' medians.
    assert minute["seconds"]["p50"] == pytest.approx(20.0, rel=0.01)
    assert "sketch" not in minute
    assert merged["unreachable"] == ["http://127.0.0.1:6067"]
    assert merged["workers"] == 2


def test_scope_must_be_all_or_local() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query({"scope": "cluster"}, WINDOWS)
    assert caught.value.parameter == "scope"
