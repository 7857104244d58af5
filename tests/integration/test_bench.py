"""`kpi bench` end to end, small: every phase runs against its own real broker and a
real worker, the Quix Streams peer included, and every figure of the table is there.

The figures of a run this small mean nothing (docs/performance.md has the real ones);
what is checked is that the harness measures what it says: each throughput run counted
all the messages it was given, the probes came through, the peer finished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_kpi_bench_measures_every_figure(tmp_path: Path) -> None:
    output, plot = tmp_path / "results.json", tmp_path / "bench.png"
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "bench",
            "--events",
            "6000",
            "--throughput-events",
            "3000",
            "--runs",
            "1",
            "--open-tickets",
            "1000",
            "--freshness-seconds",
            "5",
            "--work-dir",
            str(tmp_path / "bench"),
            "--port",
            str(port),
            "--web-port",
            str(free_port()),
            "--output",
            str(output),
            "--plot",
            str(plot),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert figures["dataset"]["messages"] == 6000
    for name in (
        "ceiling_events_per_second",
        "worker_events_per_second",
        "quix_events_per_second",
        "recovery_seconds",
        "scrape_seconds",
        "rss_per_100k_open_tickets_bytes",
        "stored_bytes_per_open_ticket",
    ):
        figure = figures[name]
        assert figure["runs"] == 1, name
        assert figure["min"] <= figure["median"] <= figure["max"], name
        assert figure["median"] > 0, name
    assert figures["freshness"]["p99_seconds"]["median"] > 0
    assert len(figures["freshness"]["caught_up"]) == 1  # whether the run caught up
    full = figures["worker_full_run"]
    assert full["events_per_second"] > 0
    # Read to the end of its own topics too: slower than the input alone, or as fast.
    assert 0 < full["all_processed_events_per_second"] <= full["events_per_second"]
    assert figures["dataset_seconds"] < figures["seconds"]
    # New tickets are a ticket.created each: a few hundred bytes of stored state.
    assert 100 < figures["stored_bytes_per_open_ticket"]["median"] < 4096
    assert plot.stat().st_size > 10_000
    assert plot.read_bytes()[:4] == b"\x89PNG"
    table = result.stdout
    for row in (
        "raw ceiling",
        "kpi-stream worker, every KPI",
        "Quix Streams peer",
        "worker / Quix",
        "worker / ceiling",
        "freshness p99",
        "RSS per 100,000",
        "stored state per open ticket",
        "recovery after kill -9",
        "/metrics scrape",
        "its own topics",
        "the whole benchmark",
    ):
        assert row in table, row
