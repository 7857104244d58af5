"""The worker and the Quix peer as subprocesses, and how the harness knows they are done.

The worker is `kpi worker` exactly as a user runs it (every KPI on, the production
RocksDB store), with its own consumer group, state directory and output topics per run,
so runs do not see each other's state. It is done when its own counters account for
every pre-loaded message: valid events + duplicates + dead-lettered messages, read
from /metrics, polled every second (those counters only).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from stream.local.broker import create_topics
from stream.local.worker_process import WorkerProcess as LocalWorkerProcess
from stream.settings import Settings

# The families whose sum over the input topics is every message the worker has handled.
_HANDLED = re.compile(
    r"^kpistream_(?:events_total|events_duplicate_total|events_rejected_total)"
    r"\{(?P<labels>[^}]*)\} (?P<value>\S+)$",
    re.M,
)
_LAG = re.compile(r"^kpistream_consumer_lag_records\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
_TOPIC = re.compile(r'topic="(?P<topic>[^"]*)"')


# The worker's own topics count as read to their end within this many records.
DRAINED_RECORDS = 50


def lag_by_topic(text: str) -> dict[str, int]:
    """The worker's consumer lag (records) per topic it reads, from /metrics."""
    out: dict[str, int] = {}
    for match in _LAG.finditer(text):
        topic = _TOPIC.search(match["labels"])
        if topic is not None:
            out[topic["topic"]] = out.get(topic["topic"], 0) + int(float(match["value"]))
    return out


# Only those families: a poll that renders the whole exposition (the KPI snapshot) costs
# the worker tens of milliseconds each time, which a progress poll should not measure.
HANDLED_QUERY = "/metrics?" + "&".join(
    f"name[]=kpistream_{family}_total"
    for family in ("events", "events_duplicate", "events_rejected")
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


class WorkerProcess(LocalWorkerProcess):
    """The worker of one benchmark run, and how the harness knows it is done."""

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        log_path: Path,
        loglevel: str = "warn",
        profile_to: Path | None = None,
        new_session: bool = True,
    ) -> Self:
        """Creates the run's topics first; in a session of its own (a profiler's child
        is killed with it)."""
        settings = Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
        create_topics(settings.bootstrap_servers, settings.topic_specs())
        return super().start(env, log_path, loglevel, profile_to, new_session)

    def handled(self, topics: tuple[str, ...]) -> int | None:
        """Messages of `topics` the worker has processed; None while it does not answer."""
        try:
            text = self.get(HANDLED_QUERY).decode()
        except OSError:
            return None
        total = 0.0
        for match in _HANDLED.finditer(text):
            if any(f'topic="{topic}"' in match["labels"] for topic in topics):
                total += float(match["value"])
        return int(total)

    def wait_drained(
        self, inputs: tuple[str, ...], timeout_s: float, poll_s: float = 1.0
    ) -> tuple[float, dict[str, int]]:
        """Once the inputs are handled: until the worker's own topics (customer activity,
        window partials) are read to their end too. Returns the seconds it took and what
        was left of them at the start (records per topic)."""
        started = time.monotonic()
        first: dict[str, int] | None = None
        while time.monotonic() - started < timeout_s:
            self.check_alive()
            # The whole exposition: the lag families are computed at scrape time (no
            # selection reaches them), and this runs once, after the measured part.
            lag = lag_by_topic(self.metrics_text())
            internal = {t: n for t, n in lag.items() if t not in inputs}
            if first is None:
                first = internal
            # Each tick adds a few records (marks, partials): read is within a tick's.
            if internal and sum(internal.values()) <= DRAINED_RECORDS:
                return time.monotonic() - started, first
            time.sleep(poll_s)
        raise TimeoutError(f"the worker's own topics still lag after {timeout_s:.0f} s: {first}")

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
        so it needs no frequent polling. A poll asks for the three counters only
        (HANDLED_QUERY): the whole exposition, rendered on the worker's loop, took a
        tenth of its time in a profile even at one poll a second."""
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
