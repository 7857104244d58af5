"""A year of real history: the UCI ServiceNow incident log (2016-2017, 141,712 audit
rows of 24,918 incidents, ../shared/data), converted by the project's column map and
replayed with `kpi replay --map ... --sort` into a real broker and a worker in replay
mode. Every daily window on kpi.windows.v1 equals what the batch oracle computes from
the same converted events: old history, windowed by event time, nothing lost to the
wall clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.csvmap import load_map, read_csv_events
from stream.report import read_kpi_topic
from tests.conftest import require_shared_data
from tests.oracle_windows import assert_windows_match, compute_windows
from tests.scrape import samples, total

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "deploy" / "replay-maps" / "servicenow-incident-log.toml"
DAY = 86_400_000


def caught_up(worker: Any) -> dict[str, Any] | None:
    metrics = samples(worker.metrics_text())
    lags = metrics.get("kpistream_consumer_lag_records", [])
    # Help-desk, order and customer-activity partitions (3 each) and the merge's one.
    owned = total(metrics, "kpistream_partitions_owned") == 10 and len(lags) == 10
    return metrics if owned and all(value == 0 for _, value in lags) else None


def test_a_year_of_incidents_gives_every_daily_window_of_the_oracle(
    kafka, isolated_env, start_worker
) -> None:
    # The log has more assignment groups than the default label bound (50): keep them all,
    # as the oracle does. And it updates incidents months after their close: keep every
    # ticket's state (the default retention, 7 days after the close, would start such a
    # late event's ticket anew, without its creation; docs/kpis.md, "Duplicates").
    log = require_shared_data("incident_event_log.csv.gz")
    env = {
        **isolated_env,
        "KPI_LIVE": "false",
        "KPI_WINDOWS": "1d",
        "KPI_MAX_QUEUES": "1000",
        "KPI_TICKET_RETENTION": "3650d",
    }
    worker = start_worker(env)
    replay = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", str(log), "--map", str(MAP), "--sort"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr

    deadline = time.monotonic() + 900
    time.sleep(3)  # a tick after the last event, then caught up again
    while (metrics := caught_up(worker)) is None:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    time.sleep(3)
    while (metrics := caught_up(worker)) is None:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    assert total(metrics, "kpistream_events_rejected_total") == 0
    assert total(metrics, "kpistream_events_late_total") == 0

    events = [
        {**e, "t": parse_rfc3339_ms(e["occurred_at"])} for e in read_csv_events(log, load_map(MAP))
    ]
    expected = compute_windows(events, (DAY,))
    latest = read_kpi_topic(kafka.bootstrap, env["KPI_KPI_TOPIC"], timeout_s=300)
    final_through_ms = int(
        min(v for _, v in metrics["kpistream_watermark_timestamp_seconds"]) * 1000
    )
    days = {key[2] for key in expected if key[2] + DAY <= final_through_ms}
    assert len(days) > 330  # about a year of daily windows is compared
    assert_windows_match(list(latest.values()), expected, final_through_ms=final_through_ms)
    # One day, by hand-checkable numbers: 2016-03-01 has solves and first resolutions.
    march_first = latest["resolved_issues/1d|all|2016-03-01T00:00:00.000Z"]
    assert march_first["is_final"]
    assert march_first["values"]["solved"] > 0
