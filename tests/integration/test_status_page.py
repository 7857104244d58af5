"""The live status page at http://127.0.0.1:6066/, opened in a real headless Chromium
(Debian's `chromium`) while a worker runs on a real broker: the numbers a newcomer reads
on it are the ones /metrics serves, queue by queue. The test also takes the README's
screenshot (written to docs/images/ when KPI_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from stream.local.feed import feed_to_file
from stream.local.simulator import SimConfig, simulate
from tests.conftest import require_tool
from tests.scrape import samples, total

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
T0 = 1_795_000_000_000  # 2026-11-17T08:26:40Z


class DataKpis(HTMLParser):
    """The text of every element with a data-kpi attribute, and the queue table's cells
    by (queue, field), from a rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.kpis: dict[str, str] = {}
        self.cells: dict[tuple[str, str], str] = {}
        self._open: list[tuple[str, tuple[str, str] | str | None]] = []
        self._queue: str | None = None
        self._text: dict[int, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        target: tuple[str, str] | str | None = None
        if tag == "tr" and a.get("data-queue"):
            self._queue = a["data-queue"]
        if a.get("data-kpi"):
            target = a["data-kpi"]
        elif tag == "td" and a.get("data-field") and self._queue is not None:
            target = (self._queue, str(a["data-field"]))
        self._open.append((tag, target))
        self._text[len(self._open)] = []

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            depth = len(self._open)
            open_tag, target = self._open.pop()
            text = "".join(self._text.pop(depth, []))
            if self._open:
                self._text[len(self._open)].append(text)
            if isinstance(target, str):
                self.kpis[target] = text.strip()
            elif target is not None:
                self.cells[target] = text.strip()
            if open_tag == "tr":
                self._queue = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text[len(self._open)].append(data)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("chromium")
    base = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    # The page fetches /status.json when it loads: virtual time runs until it rendered.
    return subprocess.run(
        [*base, "--virtual-time-budget=5000", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pct(good: float, all_: float) -> str:
    return "\u2013" if not all_ else f"{100 * good / all_:.1f} %"


def by_labels(metrics: dict[str, Any], name: str, **match: str) -> float:
    return sum(
        value
        for labels, value in metrics.get(name, [])
        if all(labels.get(k) == v for k, v in match.items())
    )


def duration(seconds: float) -> str:
    """The page's format of a duration."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def test_the_status_page_shows_what_metrics_serves(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    require_tool("chromium")
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_GRACE": "5m", "KPI_WINDOWS": "1h,1d"}
    worker = start_worker(env)
    # Two days of a small help desk and its shop.
    config = SimConfig(
        seed=6066,
        start_ms=T0,
        duration_ms=48 * HOUR,
        tickets_per_hour=12.0,
        orders_per_hour=24.0,
        duplicate_share=0.01,
        malformed_share=0.002,
    )
    path = tmp_path / "two-days.jsonl"
    messages = list(simulate(config))
    feed_to_file(iter(messages), path)
    # Paced (two days in about 40 s), so that the page's charts have a history; the
    # README's picture is taken while the events flow.
    replay = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "replay", str(path), "--speed", "4320"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(32)
    shot = tmp_path / "status-page.png"
    taken = chromium("--window-size=1280,760", f"--screenshot={shot}", f"{worker.url}/")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("KPI_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs/images/status-page.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    output, _ = replay.communicate(timeout=300)
    assert replay.returncode == 0, output.decode()

    # Wait until the worker has read everything and its numbers stand still (no live
    # clock: event time only moves with events), so page and /metrics see one state.
    deadline = time.monotonic() + 180
    previous = None
    while True:
        text = worker.metrics_text()
        metrics = samples(text)
        lags = [v for _, v in metrics.get("kpistream_consumer_lag_records", [])]
        state = re.sub(
            r"^(#.*|.*_created\{.*|kpistream_consumer_lag_seconds.*)$", "", text, flags=re.M
        )
        if lags and not any(lags) and state == previous:
            break
        previous = state
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(3)

    dom = chromium("--dump-dom", f"{worker.url}/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = DataKpis()
    page.feed(dom.stdout)
    shown = page.kpis
    assert shown["connection"].startswith("updated"), shown["connection"]
    created = total(metrics, "kpistream_tickets_created_total")
    escalated = total(metrics, "kpistream_tickets_escalated_total")
    assert escalated > 0
    assert shown["escalation_rate"] == pct(escalated, created)
    assert shown["tickets_active"] == f"{total(metrics, 'kpistream_tickets_active'):,.0f}"
    for sla in ("first_response", "resolution"):
        met = by_labels(metrics, "kpistream_sla_total", sla=sla, result="met")
        breached = by_labels(metrics, "kpistream_sla_total", sla=sla, result="breached")
        assert met + breached > 0, f"the two days decide some {sla} clocks"
        assert shown[f"sla_{sla}_attainment"] == pct(met, met + breached)
        breaching = by_labels(metrics, "kpistream_sla_breaching_tickets", sla=sla)
        assert shown[f"sla_{sla}_breaching"] == f"{breaching:,.0f}"
        at_risk = by_labels(metrics, "kpistream_sla_at_risk_tickets", sla=sla)
        assert shown[f"sla_{sla}_at_risk"] == f"{at_risk:,.0f}"

    # First response: the smallest window's percentiles over all queues.
    p50 = by_labels(
        metrics, "kpistream_first_response_window_all_seconds", window="1h", percentile="50"
    )
    p90 = by_labels(
        metrics, "kpistream_first_response_window_all_seconds", window="1h", percentile="90"
    )
    assert shown["first_response_window"] == "1h"
    assert shown["first_response_p50"] == duration(p50)
    assert shown["first_response_p90"] == duration(p90)
    responses = by_labels(metrics, "kpistream_first_response_window_responses", window="1h")
    assert shown["first_response_responses"] == f"{responses:,.0f}"

    scores = {s: by_labels(metrics, "kpistream_csat_responses_total", score=s) for s in "12345"}
    assert sum(scores.values()) > 0
    assert shown["csat"] == pct(scores["4"] + scores["5"], sum(scores.values()))
    nps = {
        c: by_labels(metrics, "kpistream_nps_responses_total", category=c)
        for c in ("promoter", "passive", "detractor")
    }
    assert shown["nps"] == f"{100 * (nps['promoter'] - nps['detractor']) / sum(nps.values()):.1f}"
    assert shown["nps_answers"] == f"{sum(nps.values()):,.0f}"

    placed = total(metrics, "kpistream_orders_placed_total")
    assert placed > 0
    assert shown["orders_placed_total"] == f"{placed:,.0f}"
    met = by_labels(metrics, "kpistream_order_confirmation_sla_total", result="met")
    missed = by_labels(metrics, "kpistream_order_confirmation_sla_total", result="missed")
    assert shown["orders_confirmed_within_60s"] == pct(met, met + missed)
    on_time = by_labels(metrics, "kpistream_order_deliveries_total", on_time="true")
    late = by_labels(metrics, "kpistream_order_deliveries_total", on_time="false")
    assert shown["orders_on_time_deliveries"] == pct(on_time, on_time + late)

    assert shown["events_total"] == f"{total(metrics, 'kpistream_events_total'):,.0f}"
    rejected = total(metrics, "kpistream_events_rejected_total")
    assert rejected > 0
    assert shown["rejected_total"] == f"{rejected:,.0f}"
    assert shown["partitions_owned"] == f"{total(metrics, 'kpistream_partitions_owned'):,.0f}"

    # The queue table: one row per queue, each cell as /metrics has it.
    queues = {labels["queue"] for labels, _ in metrics["kpistream_sla_total"]}
    assert {queue for queue, _ in page.cells} == queues
    assert len(queues) == 5
    for queue in queues:
        active = by_labels(metrics, "kpistream_tickets_active", queue=queue)
        assert page.cells[(queue, "active")] == f"{active:,.0f}", queue
        for sla in ("first_response", "resolution"):
            met = by_labels(metrics, "kpistream_sla_total", queue=queue, sla=sla, result="met")
            bad = by_labels(metrics, "kpistream_sla_total", queue=queue, sla=sla, result="breached")
            assert page.cells[(queue, f"{sla}_attainment")] == pct(met, met + bad), (queue, sla)
            now = by_labels(metrics, "kpistream_sla_breaching_tickets", queue=queue, sla=sla)
            assert page.cells[(queue, f"{sla}_breaching")] == f"{now:,.0f}", (queue, sla)
