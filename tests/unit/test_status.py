"""The status page's summary of /metrics samples, and its chart history."""

from __future__ import annotations

from stream.export.status import StatusHistory, status_summary


def sla(queue: str, name: str, result: str, value: float) -> tuple[str, dict[str, str], float]:
    labels = {"sla": name, "queue": queue, "priority": "high", "result": result}
    return ("kpistream_sla_total", labels, value)


SAMPLES = [
    ("kpistream_tickets_active", {"queue": "billing", "priority": "high", "status": "open"}, 3.0),
    ("kpistream_tickets_active", {"queue": "billing", "priority": "low", "status": "new"}, 2.0),
    ("kpistream_tickets_active", {"queue": "returns", "priority": "low", "status": "new"}, 7.0),
    sla("billing", "first_response", "met", 9.0),
    sla("billing", "first_response", "breached", 1.0),
    sla("returns", "first_response", "met", 10.0),
    sla("returns", "resolution", "met", 4.0),
    (
        "kpistream_sla_breaching_tickets",
        {"sla": "first_response", "queue": "billing", "priority": "high"},
        2.0,
    ),
    (
        "kpistream_sla_at_risk_tickets",
        {"sla": "resolution", "queue": "returns", "priority": "low"},
        1.0,
    ),
    ("kpistream_first_response_window_all_seconds", {"window": "1d", "percentile": "50"}, 600.0),
    ("kpistream_first_response_window_all_seconds", {"window": "1h", "percentile": "50"}, 60.0),
    ("kpistream_first_response_window_all_seconds", {"window": "1h", "percentile": "90"}, 90.0),
    (
        "kpistream_first_response_window_responses",
        {"window": "1h", "queue": "billing", "priority": "high"},
        4.0,
    ),
    ("kpistream_first_response_window_end_timestamp_seconds", {"window": "1h"}, 1_800_000_000.0),
    ("kpistream_csat_responses_total", {"queue": "billing", "priority": "high", "score": "5"}, 3.0),
    ("kpistream_csat_responses_total", {"queue": "billing", "priority": "high", "score": "2"}, 1.0),
    ("kpistream_nps_responses_total", {"queue": "b", "priority": "h", "category": "promoter"}, 5.0),
    ("kpistream_nps_responses_total", {"queue": "b", "priority": "h", "category": "passive"}, 3.0),
    (
        "kpistream_nps_responses_total",
        {"queue": "b", "priority": "h", "category": "detractor"},
        2.0,
    ),
    ("kpistream_events_total", {"topic": "helpdesk.events", "type": "ticket.created"}, 40.0),
    ("kpistream_events_total", {"topic": "orders.events", "type": "order.placed"}, 60.0),
    ("kpistream_events_created", {"topic": "orders.events", "type": "order.placed"}, 1.7e9),
    ("kpistream_order_confirmation_sla_total", {"channel": "web", "result": "met"}, 3.0),
    ("kpistream_order_confirmation_sla_total", {"channel": "app", "result": "missed"}, 1.0),
    ("kpistream_order_deliveries_total", {"channel": "web", "on_time": "false"}, 2.0),
    ("kpistream_consumer_lag_seconds", {"topic": "t", "partition": "0"}, 1.5),
    ("kpistream_consumer_lag_seconds", {"topic": "t", "partition": "1"}, 4.0),
]


def test_the_summary_adds_up_the_samples_per_queue_and_overall() -> None:
    s = status_summary(SAMPLES, now_ms=1_000)
    assert s["tickets_active"] == 12
    # Busiest queue first.
    assert [q["queue"] for q in s["queues"]] == ["returns", "billing"]
    billing = s["queues"][1]
    assert billing["active"] == 5
    assert billing["first_response"]["attainment"] == 0.9
    assert billing["first_response"]["breaching"] == 2
    assert billing["resolution"]["attainment"] is None  # no clock decided: unknown, not 0
    assert s["sla"]["first_response"] == {"attainment": 19 / 20, "breaching": 2, "at_risk": 0}
    assert s["sla"]["resolution"] == {"attainment": 1.0, "breaching": 0, "at_risk": 1}
    assert s["csat"] == {"ratio": 0.75, "answers": 4}
    assert s["nps"] == {"score": 30.0, "answers": 10}
    assert s["orders"]["confirmed_within_60s"] == 0.75
    assert s["orders"]["on_time_deliveries"] == 0.0
    assert s["pipeline"]["events_total"] == 100  # the _created samples are not events
    assert s["pipeline"]["consumer_lag_seconds"] == 4.0


def test_first_response_windows_come_smallest_first_with_their_end() -> None:
    windows = status_summary(SAMPLES, now_ms=0)["first_response_windows"]
    assert [w["window"] for w in windows] == ["1h", "1d"]
    assert windows[0] == {
        "window": "1h",
        "end_ms": 1_800_000_000_000,
        "responses": 4,
        "p50": 60.0,
        "p90": 90.0,
        "p99": None,
    }


def test_an_idle_worker_shows_unknowns_rather_than_zero_ratios() -> None:
    s = status_summary([], now_ms=0)
    assert s["tickets_active"] == 0
    assert s["sla"]["first_response"]["attainment"] is None
    assert s["csat"]["ratio"] is None
    assert s["nps"]["score"] is None
    assert s["orders"]["confirmed_within_60s"] is None
    assert s["queues"] == []


def test_the_history_keeps_one_point_per_interval_and_a_bounded_length() -> None:
    history = StatusHistory(points=3, interval_ms=5_000)
    for now_ms in range(0, 30_000, 1_000):
        history.add(status_summary(SAMPLES, now_ms=now_ms))
    points = history.as_json()
    assert [p["t_ms"] for p in points] == [15_000, 20_000, 25_000]
    assert points[-1] == {
        "t_ms": 25_000,
        "events_total": 100,
        "tickets_active": 12,
        "breaching": 2,
        "first_response_p90": 90.0,
    }
