"""An hour of simulated traffic, replayed with `kpi replay` through a real broker and a
worker: what /metrics shows equals what the batch oracle computes from the same file."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.broker import create_topics
from stream.local.feed import feed_to_file
from stream.local.simulator import SimConfig, simulate
from stream.settings import Settings
from tests.integration.test_pipeline import total, wait_until_processed
from tests.oracle import compute

pytestmark = pytest.mark.integration

T0 = 1_795_510_800_000  # 2026-11-24T09:00:00Z
GRACE_MS = 10 * 60_000


def by(metrics, name: str, *labels: str) -> Counter:
    result: Counter = Counter()
    for lab, value in metrics.get(name, []):
        if value:
            result[tuple(lab[k] for k in labels)] += int(value)
    return result


def test_replayed_hour_equals_the_oracle(kafka, isolated_env, start_worker, tmp_path: Path):
    # One partition: the oracle's single end-of-stream watermark is then the worker's.
    env = {
        **isolated_env,
        "KPI_PARTITIONS": "1",
        "KPI_HELPDESK_TOPIC": isolated_env["KPI_HELPDESK_TOPIC"] + "-1p",
        "KPI_ORDERS_TOPIC": isolated_env["KPI_ORDERS_TOPIC"] + "-1p",
        "KPI_LIVE": "false",
        "KPI_TICKET_RETENTION": "3650d",
    }
    settings = Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    create_topics(kafka.bootstrap, settings.topic_specs())

    config = SimConfig.for_rate(
        10,
        seed=11,
        start_ms=T0,
        duration_ms=3_600_000,
        time_scale=0.05,
        duplicate_share=0.01,
        malformed_share=0.005,
    )
    path = tmp_path / "hour.jsonl"
    messages = list(simulate(config))
    feed_to_file(iter(messages), path)
    helpdesk = [m for m in messages if m.topic == "helpdesk"]

    worker = start_worker(env)
    replay = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", str(path)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    metrics = wait_until_processed(worker, len(helpdesk), timeout_s=240)

    # The oracle reads the same file: every help-desk event with a ticket.
    ticket_events = []
    for m in helpdesk:
        if m.kind == "malformed":
            continue
        event = orjson.loads(m.value)
        if "ticket_id" in event:
            ticket_events.append({**event, "t": parse_rfc3339_ms(event["occurred_at"])})
    newest = max(
        parse_rfc3339_ms(orjson.loads(m.value)["occurred_at"])
        for m in helpdesk
        if m.kind != "malformed"
    )
    expected = compute(ticket_events, newest - GRACE_MS)

    seen = sum(
        total(metrics, name)
        for name in (
            "kpistream_events_total",
            "kpistream_events_duplicate_total",
            "kpistream_events_rejected_total",
        )
    )
    assert seen == len(helpdesk)
    assert by(metrics, "kpistream_tickets_active", "queue", "priority", "status") == Counter(
        expected.active
    )
    counts = by(metrics, "kpistream_first_response_seconds_count", "queue", "priority")
    assert counts == Counter({k: len(v) for k, v in expected.first_response_seconds.items()})
    sums = {
        (lab["queue"], lab["priority"]): v
        for lab, v in metrics["kpistream_first_response_seconds_sum"]
    }
    for dims, values in expected.first_response_seconds.items():
        assert math.isclose(sums[dims], sum(values), rel_tol=1e-9, abs_tol=1e-6)
    assert by(metrics, "kpistream_tickets_solved_total", "method") == Counter(
        {(m,): n for m, n in expected.solved_by_method.items()}
    )
    assert by(metrics, "kpistream_tickets_reopened_total", "queue").total() == expected.reopened
    assert by(metrics, "kpistream_sla_total", "sla", "priority", "result") == expected.sla
    assert sum(expected.active.values()) > 50  # the hour was not empty
