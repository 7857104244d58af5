"""A simulated day of 2016 (over 200,000 help-desk messages: 1 % duplicates, 5 % of
events out of order by up to 5 minutes, 0.1 % malformed) replayed with `kpi replay`
into a real broker and a worker that is killed with SIGKILL half-way and started again:
every final window on kpi.windows.v1 equals what the batch oracle computes from the same
file, and the malformed messages are in the dead-letter topic with their reasons.

Prints the throughput (events/s through the worker, restart included) and the worker's
RSS at the end: `scripts/test -m integration -k replayed_day -s` shows them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local.feed import feed_to_file
from stream.local.simulator import SimConfig, simulate
from stream.report import read_kpi_topic
from tests.integration.conftest import dead_letters
from tests.oracle_windows import assert_windows_match, compute_windows
from tests.scrape import samples, total

pytestmark = pytest.mark.integration

T0 = 1_456_790_400_000  # 2016-03-01T00:00:00Z
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def simulated_day(path: Path) -> list[Any]:
    config = SimConfig.for_rate(
        5.0,
        seed=2016,
        start_ms=T0,
        duration_ms=DAY + 2 * HOUR,  # past midnight by more than the grace: 1 March is final
        time_scale=0.05,
        duplicate_share=0.01,
        malformed_share=0.001,
        late_share=0.05,
        late_max_ms=5 * MINUTE,
    )
    messages = [m for m in simulate(config) if m.topic == "helpdesk"]
    feed_to_file(iter(messages), path)
    return messages


def seen(worker: Any) -> float:
    metrics = samples(worker.metrics_text())
    return sum(
        total(metrics, name)
        for name in (
            "kpistream_events_total",
            "kpistream_events_duplicate_total",
            "kpistream_events_rejected_total",
        )
    )


def caught_up(worker: Any) -> dict[str, Any] | None:
    """The worker's metrics once it owns every partition (the three input partitions
    and the merge's) and has no lag left on any."""
    metrics = samples(worker.metrics_text())
    lags = metrics.get("kpistream_consumer_lag_records", [])
    # Help-desk, order and customer-activity partitions (3 each) and the merge's one.
    owned = total(metrics, "kpistream_partitions_owned") == 10 and len(lags) == 10
    return metrics if owned and all(value == 0 for _, value in lags) else None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.parametrize("kill", [False, True], ids=["straight", "killed-half-way"])
def test_replayed_day_equals_the_oracle_through_a_kill_and_restart(
    kafka, isolated_env, start_worker, tmp_path: Path, kill: bool
) -> None:
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_GRACE": "10m"}
    path = tmp_path / "day.jsonl"
    messages = simulated_day(path)
    assert len(messages) >= 200_000

    worker = start_worker(env)
    started = time.monotonic()
    replay = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "replay", str(path)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        seen_before_kill = 0.0
        if kill:
            # Half-way through, the worker dies without a chance to commit or flush.
            deadline = time.monotonic() + 600
            while (seen_before_kill := seen(worker)) < len(messages) * 0.4:
                assert time.monotonic() < deadline, worker.log_tail()
                time.sleep(0.5)
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait()
            worker = start_worker(env, timeout_s=180)
        out, _ = replay.communicate(timeout=600)
        assert replay.returncode == 0, out.decode()
    finally:
        if replay.poll() is None:
            replay.kill()

    deadline = time.monotonic() + 600
    while (metrics := caught_up(worker)) is None:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    rss = rss_mib(worker.process.pid)

    # The last partials go out on the worker's 1 s tick: once more caught up after it,
    # the merge has emitted everything.
    time.sleep(3)
    while (metrics := caught_up(worker)) is None:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    latest = read_kpi_topic(kafka.bootstrap, env["KPI_KPI_TOPIC"], timeout_s=300)
    watermarks = [v for _, v in metrics["kpistream_watermark_timestamp_seconds"]]
    final_through_ms = int(min(watermarks) * 1000)
    assert final_through_ms >= T0 + DAY + 10 * MINUTE  # 1 March 2016 is a final window

    events = []
    for m in messages:
        if m.kind != "malformed":
            body = orjson.loads(m.value)
            events.append({**body, "t": parse_rfc3339_ms(body["occurred_at"])})
    expected = compute_windows(events, (MINUTE, HOUR, DAY))
    assert_windows_match(list(latest.values()), expected, final_through_ms=final_through_ms)
    day = latest["tickets_active/1d|all|2016-03-01T00:00:00.000Z"]
    assert day["is_final"]
    assert day["values"]["active"] > 0

    # Every malformed message is in the DLQ with its reason (the restart may add copies
    # of those re-delivered after it: at least once, never lost).
    dead = {
        (h["source_partition"], h["source_offset"]): h
        for h, _ in dead_letters(kafka.bootstrap, env["KPI_DLQ_TOPIC"])
    }
    malformed = [m for m in messages if m.kind == "malformed"]
    assert len(dead) == len(malformed)
    assert all(h["reason"] and h["detail"] for h in dead.values())

    restart = f"killed after {int(seen_before_kill):,} and restarted" if kill else "no restart"
    print(
        f"\nreplayed {len(messages):,} help-desk messages ({restart}): "
        f"{len(messages) / elapsed:,.0f} messages/s end to end ({elapsed:.0f} s), worker RSS "
        f"at the end {rss:,.0f} MiB, {len(latest):,} KPI messages, {len(expected):,} windows"
    )
