"""Faults production brings, against the real broker, each compared with the batch
oracles at the end (tests/integration/faults.py): nothing lost, nothing counted twice.

- kill -9 of the worker five times in a row during a long replay, restarted each time,
  with the RocksDB store and with the memory store (state from the changelogs only);
- the broker stopped and started again in the middle of the stream;
- two workers, a third joining during the stream, one of the first two killed;
- the KPI topic refusing every write for 40 s (back-pressure, bounded memory);
- a producer whose clock runs a year ahead (its events go to the DLQ).

`scripts/test -m faults -s` prints the figures (messages, kills, recovery times).
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
import urllib.request
import warnings
from pathlib import Path

import orjson
import pytest

from stream.kpi.timefmt import format_rfc3339_ms
from stream.local.broker import LocalBroker, create_topics
from stream.local.feed import feed_to_file
from stream.local.simulator import SimMessage
from stream.settings import Settings
from tests.conftest import free_port
from tests.integration.conftest import dead_letters
from tests.integration.faults import (
    WINDOWS,
    assert_exact,
    finish,
    lag_records,
    rss_mib,
    seen,
    simulated_history,
    start_replay,
    wait_done,
)
from tests.scrape import samples, total

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_five_kills_in_a_row_lose_nothing_and_count_nothing_twice(
    kafka, isolated_env, start_worker, tmp_path: Path, store: str
) -> None:
    env = {
        **isolated_env,
        "KPI_LIVE": "false",
        "KPI_GRACE": "10m",
        "KPI_WINDOWS": WINDOWS,
        "KPI_STORE": store,
    }
    path = tmp_path / "history.jsonl"
    messages = simulated_history(path, days=10, seed=7, tickets_per_hour=25, orders_per_hour=50)
    assert len(messages) >= 100_000

    worker = start_worker(env)
    started = time.monotonic()
    replay = start_replay(path, env)
    rng = random.Random(f"kills-{store}")
    recoveries, killed_at = [], []
    try:
        for _ in range(5):
            # A random while of processing, then SIGKILL: no commit, no flush, no close.
            time.sleep(rng.uniform(2.0, 10.0))
            assert lag_records([worker]) > 0 or replay.poll() is None, "the stream is over"
            killed_at.append(int(seen(samples(worker.metrics_text()))))
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait()
            restarted = time.monotonic()
            worker = start_worker(env, timeout_s=300)
            recoveries.append(time.monotonic() - restarted)
        finish(replay)
    finally:
        if replay.poll() is None:
            replay.kill()
    metrics = wait_done([worker])
    elapsed = time.monotonic() - started
    compared = assert_exact(kafka.bootstrap, env, messages, metrics)

    # Every malformed message is in the DLQ (copies re-sent after a kill are the same
    # source offset: at least once, never lost).
    dead = {
        (h["source_topic"], h["source_partition"], h["source_offset"])
        for h, _ in dead_letters(kafka.bootstrap, env["KPI_DLQ_TOPIC"])
    }
    assert len(dead) == sum(1 for m in messages if m.kind == "malformed")
    print(
        f"\n{store}: {len(messages):,} messages, killed 5 times (after "
        f"{', '.join(f'{n:,}' for n in killed_at)} messages of each run); recovery "
        f"(restart until the partitions are owned again) {min(recoveries):.1f}-"
        f"{max(recoveries):.1f} s, median {sorted(recoveries)[2]:.1f} s; "
        f"{len(messages) / elapsed:,.0f} messages/s end to end; RSS "
        f"{rss_mib(worker.process.pid):,.0f} MiB; compared {compared}"
    )


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return dict(orjson.loads(response.read()))


def test_the_worker_rides_out_a_broker_restart_and_reports_the_outage(
    isolated_env, start_worker, tmp_path: Path
) -> None:
    # A broker of its own: this test stops it.
    broker = LocalBroker(free_port(), free_port(), tmp_path / "kafka")
    broker.up()
    try:
        env = {
            **isolated_env,
            "KPI_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KPI_LIVE": "false",
            "KPI_GRACE": "10m",
            "KPI_WINDOWS": WINDOWS,
            "KPI_STORE": "rocksdb://",
        }
        settings = Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
        create_topics(broker.bootstrap, settings.topic_specs())
        path = tmp_path / "history.jsonl"
        messages = simulated_history(path, days=6, seed=11)
        half = len(messages) // 2
        worker = start_worker(env)
        assert health(worker.url)["kafka"]["reachable"] is True

        finish(start_replay(path, env, "--max-messages", str(half)))
        deadline = time.monotonic() + 300
        while seen(samples(worker.metrics_text())) < half * 0.9:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)

        broker.down()
        outage_started = time.monotonic()
        deadline = time.monotonic() + 60
        while (state := health(worker.url))["status"] != "degraded":
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        assert state["kafka"]["reachable"] is False
        time.sleep(20)  # an outage of some length
        metrics = samples(worker.metrics_text())
        assert total(metrics, "kpistream_broker_up") == 0
        assert total(metrics, "kpistream_broker_outage_seconds") >= 15
        assert worker.process.poll() is None, "the worker must outlive the broker"

        broker.up()
        deadline = time.monotonic() + 120
        while health(worker.url)["status"] != "ok":
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        back_after = time.monotonic() - outage_started
        # The rest of the stream, after the broker is back.
        rest = tmp_path / "rest.jsonl"
        rest.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[half:]))
        finish(start_replay(rest, env))
        metrics_list = wait_done([worker], timeout_s=600)
        compared = assert_exact(broker.bootstrap, env, messages, metrics_list)
        metrics = metrics_list[0]
        assert total(metrics, "kpistream_broker_outages_total") == 1
        assert total(metrics, "kpistream_broker_up") == 1
        # The same process throughout: it reconnected by itself.
        assert worker.process.poll() is None
        print(
            f"\nbroker down for {back_after:.0f} s in the middle of {len(messages):,} "
            f"messages; the worker reconnected by itself; compared {compared}"
        )
    finally:
        broker.down()


def test_workers_join_and_die_during_the_stream_and_nothing_counts_twice(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    env = {
        **isolated_env,
        "KPI_LIVE": "false",
        "KPI_GRACE": "10m",
        "KPI_WINDOWS": WINDOWS,
        "KPI_STORE": "rocksdb://",
    }

    def own(name: str) -> dict[str, str]:
        """A worker of the same group with its own port and state directory."""
        return {**env, "KPI_WEB_PORT": str(free_port()), "KPI_DATA_DIR": str(tmp_path / name)}

    path = tmp_path / "history.jsonl"
    messages = simulated_history(path, days=10, seed=23, tickets_per_hour=25, orders_per_hour=50)
    workers = [start_worker(own("a")), start_worker(own("b"))]
    replay = start_replay(path, env)
    owned_sums = []

    def watch(seconds: float) -> None:
        """Partitions owned, summed over the live workers, every half second: never more
        than there are (a standby or a recovering partition is not owned)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            owned = 0.0
            for w in workers:
                with contextlib.suppress(OSError):  # a worker just killed
                    owned += total(samples(w.metrics_text()), "kpistream_partitions_owned")
            owned_sums.append(owned)
            time.sleep(0.5)

    try:
        watch(8)
        workers.append(start_worker(own("c")))  # a third joins during the stream
        watch(10)
        victim = workers.pop(1)  # and one of the first two dies
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        watch(10)
        finish(replay)
    finally:
        if replay.poll() is None:
            replay.kill()
    metrics = wait_done(workers)
    assert max(owned_sums) <= 10, owned_sums
    compared = assert_exact(kafka.bootstrap, env, messages, metrics)
    shares = [int(total(m, "kpistream_partitions_owned")) for m in metrics]
    assert all(shares), shares  # both survivors own partitions
    print(
        f"\n{len(messages):,} messages through 2, then 3 workers, then one killed: "
        f"partitions owned at the end {shares}; compared {compared}"
    )


def set_topic_config(bootstrap: str, topic: str, **configs: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)
        admin.alter_configs([resource])
    finally:
        admin.close()


def test_a_stuck_kpi_topic_holds_the_merge_back_without_growing_memory(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    env = {
        **isolated_env,
        "KPI_LIVE": "false",
        "KPI_GRACE": "10m",
        "KPI_WINDOWS": WINDOWS,
        "KPI_STORE": "rocksdb://",
    }
    path = tmp_path / "history.jsonl"
    messages = simulated_history(path, days=8, seed=31)
    first = len(messages) // 3
    worker = start_worker(env)
    finish(start_replay(path, env, "--max-messages", str(first)))
    deadline = time.monotonic() + 300
    while seen(samples(worker.metrics_text())) < first:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    rss_before = rss_mib(worker.process.pid)

    # The KPI topic refuses every write: its records may be 64 bytes at most.
    kpi_topic = env["KPI_KPI_TOPIC"]
    set_topic_config(kafka.bootstrap, kpi_topic, **{"max.message.bytes": "64"})
    rest = tmp_path / "rest.jsonl"
    rest.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[first:]))
    finish(start_replay(rest, env))
    # The broker applies the new limit within a moment: from the first refused send on,
    # nothing more may reach the topic.
    deadline = time.monotonic() + 60
    while total(metrics := samples(worker.metrics_text()), "kpistream_kpi_send_errors_total") == 0:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    stuck_at = total(metrics, "kpistream_kpi_messages_total")
    peak_rss, partial_lag = rss_before, 0.0
    stuck_until = time.monotonic() + 40
    while time.monotonic() < stuck_until:
        assert worker.process.poll() is None, worker.log_tail()
        metrics = samples(worker.metrics_text())
        peak_rss = max(peak_rss, rss_mib(worker.process.pid))
        partial_lag = max(
            partial_lag,
            sum(
                v
                for labels, v in metrics.get("kpistream_consumer_lag_records", [])
                if labels["topic"] == env["KPI_PARTIALS_TOPIC"]
            ),
        )
        time.sleep(1)
    # Nothing reached the KPI topic; the merge waits and retries (counted), the partials
    # wait in Kafka (not in memory), and the input went on being processed.
    assert total(metrics, "kpistream_kpi_messages_total") == stuck_at
    assert total(metrics, "kpistream_kpi_send_errors_total") > 0
    assert partial_lag > 0
    assert seen(metrics) > first
    assert peak_rss < rss_before + 150, (rss_before, peak_rss)

    # Writable again: the merge catches up, and the topic is exact.
    set_topic_config(kafka.bootstrap, kpi_topic, **{"max.message.bytes": "1048588"})
    compared = assert_exact(kafka.bootstrap, env, messages, wait_done([worker]))
    print(
        f"\nKPI topic unwritable for 40 s: the merge held back (partials lag up to "
        f"{partial_lag:,.0f}, {total(metrics, 'kpistream_kpi_send_errors_total'):,.0f} "
        f"failed sends retried), RSS {rss_before:,.0f} -> {peak_rss:,.0f} MiB; compared {compared}"
    )


def test_events_from_a_clock_far_ahead_go_to_the_dlq_and_close_no_window(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    """Producers' clocks minutes off are in the history already (5 % of the events are
    up to 5 minutes late, within the grace period). Here a producer whose clock runs a
    year ahead sends, half-way through, ticket events dated 2027: accepted, they would
    move the watermark past every window and close them all early."""
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_GRACE": "10m", "KPI_WINDOWS": WINDOWS}
    messages = simulated_history(tmp_path / "history.jsonl", days=4, seed=53)
    half = len(messages) // 2
    year_ahead_ms = int(time.time() * 1000) + 365 * 86_400_000
    future = []
    for i in range(5):
        at_ms = year_ahead_ms + i * 60_000
        body = {
            "event_id": f"skewed-{i}",
            "type": "ticket.created",
            "occurred_at": format_rfc3339_ms(at_ms),
            "ticket_id": f"SKEW-{i}",
            "customer_id": f"c-skew-{i}",
            "queue": "billing",
            "priority": "urgent",
            "channel": "email",
        }
        future.append(
            SimMessage("helpdesk", f"SKEW-{i}".encode(), orjson.dumps(body), at_ms, at_ms, "event")
        )
    path = tmp_path / "skewed.jsonl"
    feed_to_file(iter([*messages[:half], *future, *messages[half:]]), path)
    worker = start_worker(env)
    finish(start_replay(path, env))
    metrics = wait_done([worker])
    rejected = {
        labels["reason"]: value for labels, value in metrics[0]["kpistream_events_rejected_total"]
    }
    assert rejected["future_timestamp"] == 5
    dead = dead_letters(kafka.bootstrap, env["KPI_DLQ_TOPIC"])
    assert sum(h["reason"] == b"future_timestamp" for h, _ in dead) == 5
    # The windows close by the history's own time: everything equals the oracle of the
    # history without the five.
    watermarks = [v for _, v in metrics[0]["kpistream_watermark_timestamp_seconds"]]
    assert max(watermarks) * 1000 < year_ahead_ms - 300 * 86_400_000
    compared = assert_exact(kafka.bootstrap, env, messages, metrics)
    print(f"\n5 events a year ahead among {len(messages):,}: DLQ'd; compared {compared}")
