"""A real Kafka broker for the session, started with `kpi kafka up`, and worker processes."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.local.broker import create_topics
from stream.local.worker_process import WorkerProcess
from stream.settings import Settings
from tests.conftest import free_port

_names = itertools.count(1)


@dataclass
class Broker:
    bootstrap: str
    state_dir: Path


def _kpi(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kpi {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def dead_letters(bootstrap: str, topic: str) -> list[tuple[dict[str, bytes], bytes]]:
    """Every record of the one-partition dead-letter topic: (headers, value)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        enable_auto_commit=False,
    )
    consumer.assign([TopicPartition(topic, 0)])
    try:
        return [(dict(r.headers), r.value) for r in consumer]
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    port, controller = free_port(), free_port()
    state = tmp_path_factory.mktemp("kafka")
    args = ["--port", str(port), "--controller-port", str(controller), "--state-dir", str(state)]
    _kpi("kafka", "up", *args)
    try:
        yield Broker(f"127.0.0.1:{port}", state)
    finally:
        _kpi("kafka", "down", "--port", str(port), "--state-dir", str(state), timeout=60)


@pytest.fixture
def isolated_env(kafka: Broker, tmp_path: Path) -> dict[str, str]:
    """Settings of one test: its own topics, consumer group and state directory."""
    n = next(_names)
    prefix = f"t{n}-{os.getpid()}"
    env = {
        "KPI_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "KPI_APP_ID": f"kpi-test-{prefix}",
        "KPI_HELPDESK_TOPIC": f"{prefix}.helpdesk.events",
        "KPI_ORDERS_TOPIC": f"{prefix}.orders.events",
        "KPI_INDICATORS_TOPIC": f"{prefix}.indicators.external",
        "KPI_KPI_TOPIC": f"{prefix}.kpi.windows.v1",
        "KPI_DLQ_TOPIC": f"{prefix}.dlq",
        "KPI_PARTIALS_TOPIC": f"{prefix}.window-partials",
        "KPI_CUSTOMERS_TOPIC": f"{prefix}.customer-activity",
        "KPI_DATA_DIR": str(tmp_path / "worker"),
        # The test default; test_restart runs the production store (RocksDB) too.
        "KPI_STORE": "memory://",
        "KPI_WEB_PORT": str(free_port()),
    }
    settings = Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    create_topics(kafka.bootstrap, settings.topic_specs())
    return env


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[object]:
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], timeout_s: float = 90) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess.start(env, log_path, loglevel="info")
        process = worker.process
        started.append(worker)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}:\n{worker.log_tail()}")
            with contextlib.suppress(OSError):  # not listening yet
                if "kpistream_partitions_owned{" in worker.metrics_text():
                    return worker
            time.sleep(0.5)
        raise TimeoutError(f"worker did not own partitions in {timeout_s} s:\n{worker.log_tail()}")

    yield start
    for worker in started:
        worker.stop()
