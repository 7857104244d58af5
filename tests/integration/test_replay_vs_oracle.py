"""An hour of simulated traffic, replayed with `kpi replay` through a real broker and a
worker: what /metrics shows equals what the batch oracle computes from the same file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.broker import create_topics
from stream.local.feed import feed_to_file
from stream.local.simulator import SimConfig, simulate
from stream.settings import Settings
from tests.integration.test_pipeline import wait_until_processed
from tests.oracle import assert_metrics_match, compute

pytestmark = pytest.mark.integration

T0 = 1_795_510_800_000  # 2026-11-24T09:00:00Z
GRACE_MS = 10 * 60_000


def test_replayed_hour_equals_the_oracle(kafka, isolated_env, start_worker, tmp_path: Path):
    # One partition: the oracle's single end-of-stream watermark is then the worker's.
    env = {
        **isolated_env,
        "KPI_PARTITIONS": "1",
        "KPI_HELPDESK_TOPIC": isolated_env["KPI_HELPDESK_TOPIC"] + "-1p",
        "KPI_ORDERS_TOPIC": isolated_env["KPI_ORDERS_TOPIC"] + "-1p",
        "KPI_PARTIALS_TOPIC": isolated_env["KPI_PARTIALS_TOPIC"] + "-1p",
        "KPI_CUSTOMERS_TOPIC": isolated_env["KPI_CUSTOMERS_TOPIC"] + "-1p",
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
    # Both topics are consumed (orders too): wait for every message, compare help desk.
    metrics = wait_until_processed(worker, len(messages), timeout_s=240)

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
        value
        for name in (
            "kpistream_events_total",
            "kpistream_events_duplicate_total",
            "kpistream_events_rejected_total",
        )
        for labels, value in metrics.get(name, [])
        if labels.get("topic") == env["KPI_HELPDESK_TOPIC"]
    )
    assert seen == len(helpdesk)
    assert_metrics_match(metrics, expected)
    assert sum(expected.active.values()) > 50  # the hour was not empty
