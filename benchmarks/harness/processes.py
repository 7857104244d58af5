"""The worker and the Quix peer as subprocesses, and how the harness knows they are done.

The worker is `kpi worker` exactly as a user runs it (every KPI on, the production
RocksDB store), with its own consumer group, state directory and output topics per run,
so runs do not see each other's state. It is done when its own counters account for
every pre-loaded message: valid events + duplicates + dead-lettered messages, read
from /metrics, polled every 100 ms.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stream.local.broker import create_topics
from stream.settings import Settings

# The families whose sum over the input topics is every message the worker has handled.
_HANDLED = re.compile(
    r"^kpistream_(?:events_total|events_duplicate_total|events_rejected_total)"
    r"\{(?P<labels>[^}]*)\} (?P<value>\S+)$",
    re.M,
)


def worker_env(
    run: str, bootstrap: str, helpdesk_topic: str, orders_topic: str, data_dir: Path, port: int
) -> dict[str, str]:
    """The settings of one benchmark run of the worker: defaults except the names."""
    return {
        "KPI_BOOTSTRAP_SERVERS": bootstrap,
        "KPI_APP_ID": f"kpi-bench-{run}",
        "KPI_HELPDESK_TOPIC": helpdesk_topic,
        "KPI_ORDERS_TOPIC": orders_topic,
        "KPI_INDICATORS_TOPIC": f"{run}.indicators.external",
        "KPI_KPI_TOPIC": f"{run}.kpi.windows.v1",
        "KPI_DLQ_TOPIC": f"{run}.dlq",
        "KPI_PARTIALS_TOPIC": f"{run}.window-partials",
        "KPI_CUSTOMERS_TOPIC": f"{run}.customer-activity",
        "KPI_DATA_DIR": str(data_dir),
        "KPI_WEB_PORT": str(port),
        # The events are history (a replay): windows close by event time only.
        "KPI_LIVE": "false",
    }


@dataclass(frozen=True)
class Progress:
    """Two polls of the worker's counters: monotonic seconds and messages handled."""

    first_s: float
    first_count: int
    last_s: float
    last_count: int

    @property
    def seconds(self) -> float:
        return self.last_s - self.first_s

    @property
    def events_per_second(self) -> float:
        return (self.last_count - self.first_count) / self.seconds


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    env: dict[str, str]

    @classmethod
    def start(
        cls, env: dict[str, str], log_path: Path, profile_to: Path | None = None
    ) -> WorkerProcess:
        """`profile_to`: run under pyinstrument, its text report written there at SIGINT."""
        settings = Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
        create_topics(settings.bootstrap_servers, settings.topic_specs())
        profiler = []
        if profile_to is not None:
            profiler = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(profile_to)]
        process = subprocess.Popen(
            [sys.executable, *profiler, "-m", "stream.cli", "worker", "--loglevel", "warn"],
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
        return cls(process, f"http://127.0.0.1:{env['KPI_WEB_PORT']}", log_path, env)

    def get(self, path: str, timeout_s: float = 5) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as response:
            return bytes(response.read())

    def metrics_text(self) -> str:
        return self.get("/metrics").decode()

    def handled(self, topics: tuple[str, ...]) -> int | None:
        """Messages of `topics` the worker has processed; None while it does not answer."""
        try:
            text = self.metrics_text()
        except OSError:
            return None
        total = 0.0
        for match in _HANDLED.finditer(text):
            if any(f'topic="{topic}"' in match["labels"] for topic in topics):
                total += float(match["value"])
        return int(total)

    def wait_handled(
        self,
        topics: tuple[str, ...],
        expected: int,
        timeout_s: float,
        poll_s: float = 1.0,
        since: Progress | None = None,
    ) -> Progress:
        """Poll until `expected` messages are handled. The rate is taken between two
        polls with their exact counts (the first that saw any, or `since`, and the last),
        so it needs no frequent polling: every poll renders /metrics on the worker's
        loop, and polling every 100 ms cost it a tenth of its CPU in a profile."""
        first = since
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            count = self.handled(topics)
            now = time.monotonic()
            if count:
                if first is None:
                    first = Progress(now, count, now, count)
                if count >= expected:
                    return Progress(first.first_s, first.first_count, now, count)
            time.sleep(poll_s)
        raise TimeoutError(
            f"the worker handled {self.handled(topics)} of {expected} messages in "
            f"{timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def rss_bytes(self) -> int:
        """Resident memory of the worker process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the worker exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def interrupt(self, timeout_s: float = 120) -> None:
        """Ctrl-C: the worker stops in order (and a profiler writes its report)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
