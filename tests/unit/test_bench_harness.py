"""The benchmark harness's arithmetic and parsing (benchmarks/harness): what `kpi bench`
prints is only as right as these."""

from __future__ import annotations

import pytest

from benchmarks.harness.freshness import PROBE_QUEUE, lag_records, probe_value, probes_shown
from benchmarks.harness.processes import WorkerProcess, lag_by_topic
from benchmarks.harness.report import derived, table, verdicts
from benchmarks.harness.state import active_tickets, owned
from benchmarks.harness.stats import Figure
from stream.codec import HELPDESK_TYPES, Decoder, Rejection

EXPOSITION = f"""\
# HELP kpistream_tickets_active tickets created and not yet solved or closed, now
# TYPE kpistream_tickets_active gauge
kpistream_tickets_active{{priority="normal",queue="{PROBE_QUEUE}",status="new"}} 7.0
kpistream_tickets_active{{priority="high",queue="{PROBE_QUEUE}",status="open"}} 2.0
kpistream_tickets_active{{priority="high",queue="billing",status="open"}} 40.0
kpistream_events_total{{topic="b.helpdesk",type="ticket.created"}} 100.0
kpistream_events_total{{topic="b.orders",type="order.placed"}} 50.0
kpistream_events_total{{topic="other.customers",type="activity"}} 999.0
kpistream_events_duplicate_total{{topic="b.helpdesk"}} 3.0
kpistream_events_rejected_total{{topic="b.orders",reason="invalid_json"}} 1.0
kpistream_events_late_total{{topic="b.helpdesk",kpi="first_response"}} 500.0
kpistream_partitions_owned{{topic="b.helpdesk"}} 3.0
kpistream_partitions_owned{{topic="b.orders"}} 3.0
# HELP kpistream_consumer_lag_records records not yet processed
# TYPE kpistream_consumer_lag_records gauge
kpistream_consumer_lag_records{{partition="0",topic="b.helpdesk"}} 12.0
kpistream_consumer_lag_records{{partition="0",topic="b.customer-activity"}} 5.0
"""


def test_figure_is_the_median_with_min_and_max() -> None:
    figure = Figure.of([3.0, 1.0, 10.0])
    assert (figure.median, figure.min, figure.max, figure.runs) == (3.0, 1.0, 10.0, 3)
    assert Figure.of([1.0, 2.0]).median == 1.5
    with pytest.raises(ValueError, match="at least one run"):
        Figure.of([])


def test_probes_are_counted_over_priorities_and_statuses_of_their_queue_only() -> None:
    assert probes_shown(EXPOSITION) == 9
    assert active_tickets(EXPOSITION) == 49
    assert owned(EXPOSITION) == {"b.helpdesk": 3, "b.orders": 3}


def test_the_lag_is_summed_over_every_topic_and_unknown_before_the_first_report() -> None:
    # The freshness run starts measuring once the worker's lag is small (freshness.py).
    assert lag_records(EXPOSITION) == 17
    assert lag_records(EXPOSITION.split("# HELP kpistream_consumer_lag")[0]) is None


def test_a_probe_is_a_valid_ticket_created_event() -> None:
    decoded = Decoder(HELPDESK_TYPES, max_future_ms=None).decode(
        probe_value(4, 1_795_000_000_000, "r1"), 1_795_000_000_000
    )
    assert not isinstance(decoded, Rejection), decoded
    assert decoded.body["queue"] == PROBE_QUEUE


def test_handled_counts_valid_duplicate_and_rejected_messages_of_the_input_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = WorkerProcess.__new__(WorkerProcess)
    asked = []
    monkeypatch.setattr(worker, "get", lambda path: asked.append(path) or EXPOSITION.encode())
    # Late facts are not messages; the customer topic is not an input of the dataset.
    assert worker.handled(("b.helpdesk", "b.orders")) == 154
    assert worker.handled(("b.helpdesk",)) == 103
    assert all("name[]=kpistream_events_total" in path for path in asked)  # a selection


def results(
    worker: float, quix: float, p99_s: float, stored: float, scrape_s: float, minutes: float = 14
) -> dict:
    def fig(v: float) -> dict[str, float]:
        return {"median": v, "min": v * 0.9, "max": v * 1.1, "runs": 3}

    return {
        "ceiling_events_per_second": fig(400_000),
        "worker_events_per_second": fig(worker),
        "quix_events_per_second": fig(quix),
        "freshness": {"p50_seconds": fig(0.1), "p99_seconds": fig(p99_s)},
        "rss_per_100k_open_tickets_bytes": fig(50 * 2**20),
        "stored_bytes_per_open_ticket": fig(stored),
        "recovery_seconds": fig(11.0),
        "scrape_seconds": fig(scrape_s),
        "dataset": {"messages": 1_000_000},
        "worker_full_run": {"all_processed_events_per_second": worker * 0.8},
        "seconds": minutes * 60 + 100,
        "dataset_seconds": 100,
    }


def test_targets_are_judged_on_the_medians() -> None:
    good = results(worker=60_000, quix=20_000, p99_s=0.5, stored=800, scrape_s=0.02)
    assert derived(good)["worker_vs_ceiling"] == pytest.approx(0.15)
    assert derived(good)["worker_vs_quix"] == pytest.approx(3.0)
    assert all(verdicts(good).values())
    bad = results(worker=3_000, quix=10_000, p99_s=2.5, stored=1100, scrape_s=0.05, minutes=21)
    assert not any(verdicts(bad).values())


def test_the_table_shows_each_figure_with_its_range_and_verdict() -> None:
    text = table(results(worker=3_000, quix=10_000, p99_s=0.5, stored=800, scrape_s=0.06))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()[2:]}
    assert "3,000 (2,700-3,300)" in rows["kpi-stream worker, every KPI"]
    assert "0.30" in rows["worker / Quix"]
    assert "**missed**" in rows["worker / Quix"]
    assert "met" in rows["freshness p99 at half the worker's rate"]
    assert "500 (450-550)" in rows["freshness p99 at half the worker's rate"]
    assert "**missed**" in rows["/metrics scrape"]
    assert "50.0" in rows["RSS per 100,000 open tickets"]
    assert "met" in rows["the whole benchmark (its dataset in place)"]
    assert "14.0" in rows["the whole benchmark (its dataset in place)"]
    full = next(r for name, r in rows.items() if name.startswith("worker over all 1,000,000"))
    assert "2,400" in full


def test_lag_by_topic_sums_the_partitions_of_each_topic() -> None:
    text = (
        'kpistream_consumer_lag_records{partition="0",topic="r.customer-activity"} 5116.0\n'
        'kpistream_consumer_lag_records{partition="1",topic="r.customer-activity"} 4.0\n'
        'kpistream_consumer_lag_records{partition="0",topic="b.helpdesk"} 0.0\n'
    )
    assert lag_by_topic(text) == {"r.customer-activity": 5120, "b.helpdesk": 0}


def test_drained_once_the_workers_own_topics_are_read_the_inputs_aside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exposition(activity_lag: int) -> str:
        return (
            f'kpistream_consumer_lag_records{{partition="0",topic="r.customer-activity"}} '
            f"{activity_lag}.0\n"
            'kpistream_consumer_lag_records{partition="0",topic="b.helpdesk"} 900.0\n'
        )

    pages = iter([exposition(5000), exposition(400), exposition(3)])
    worker = WorkerProcess.__new__(WorkerProcess)
    monkeypatch.setattr(worker, "check_alive", lambda: None)
    monkeypatch.setattr(worker, "metrics_text", lambda: next(pages))
    seconds, backlog = worker.wait_drained(("b.helpdesk",), timeout_s=10, poll_s=0)
    assert backlog == {"r.customer-activity": 5000}
    assert seconds >= 0
