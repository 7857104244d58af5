"""What state costs: memory and stored bytes per open ticket, recovery after kill -9,
and the time to scrape /metrics with that state."""

from __future__ import annotations

import re
import statistics
import time
import warnings
from dataclasses import dataclass

import orjson

from benchmarks.harness.processes import WorkerProcess
from stream.kpi.timefmt import format_rfc3339_ms

_ACTIVE = re.compile(r"^kpistream_tickets_active\{[^}]*\} (\S+)$", re.M)
_OWNED = re.compile(r'^kpistream_partitions_owned\{topic="([^"]+)"\} (\S+)$', re.M)
QUEUES = ("billing", "shipping", "returns", "technical", "accounts")


def active_tickets(text: str) -> int:
    return int(sum(float(v) for v in _ACTIVE.findall(text)))


def owned(text: str) -> dict[str, int]:
    return {topic: int(float(v)) for topic, v in _OWNED.findall(text)}


@dataclass(frozen=True)
class OpenTicketsRun:
    tickets: int
    rss_before_bytes: int
    rss_after_bytes: int
    stored_bytes_per_ticket: float  # the ticket's record in the changelog (its durable state)

    @property
    def rss_per_100k_bytes(self) -> float:
        return (self.rss_after_bytes - self.rss_before_bytes) / self.tickets * 100_000

    @property
    def rss_per_ticket_bytes(self) -> float:
        return (self.rss_after_bytes - self.rss_before_bytes) / self.tickets


def created(number: int, run: str, occurred_ms: int) -> tuple[bytes, bytes]:
    ticket = f"O-{run}-{number:07d}"
    value = orjson.dumps(
        {
            "event_id": f"open-{run}-{number}",
            "type": "ticket.created",
            "occurred_at": format_rfc3339_ms(occurred_ms),
            "schema_version": 1,
            "ticket_id": ticket,
            "customer_id": f"C-{number % 50_000:06d}",
            "queue": QUEUES[number % len(QUEUES)],
            "priority": ("urgent", "high", "normal", "low")[number % 4],
            "channel": ("email", "web", "phone", "chat")[number % 4],
        }
    )
    return ticket.encode(), value


def _producer(bootstrap: str):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=50, batch_size=1024 * 1024)


def changelog_value_bytes(bootstrap: str, topic: str, prefix: bytes) -> tuple[int, int]:
    """(keys, bytes of their newest values) in a changelog, for keys starting with `prefix`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    newest: dict[bytes, int] = {}
    try:
        for record in consumer:
            if record.key is not None and record.key.strip(b'"').startswith(prefix):
                newest[record.key] = len(record.value or b"")
    finally:
        consumer.close()
    return len(newest), sum(newest.values())


def measure_open_tickets(
    worker: WorkerProcess,
    bootstrap: str,
    helpdesk_topic: str,
    changelog: str,
    tickets: int,
    run: str,
) -> OpenTicketsRun:
    """`tickets` new tickets, none answered: the memory they add and their stored size.

    A first tenth warms the worker up (buffers, caches and lazily built validators grow
    with the first events, not with the tickets); the memory is measured across the rest.
    """
    warm_up = max(tickets // 10, 1)
    producer = _producer(bootstrap)
    now_ms = int(time.time() * 1000)

    def send(numbers: range) -> None:
        base = worker.handled((helpdesk_topic,)) or 0
        for number in numbers:
            key, value = created(number, run, now_ms - (warm_up + tickets - number))
            producer.send(helpdesk_topic, key=key, value=value)
        producer.flush(timeout=60)
        worker.wait_handled((helpdesk_topic,), base + len(numbers), timeout_s=900, poll_s=0.5)

    try:
        send(range(warm_up))
        time.sleep(1)
        before = worker.rss_bytes()
        send(range(warm_up, warm_up + tickets))
    finally:
        producer.close()
    time.sleep(1)
    after = worker.rss_bytes()
    keys, stored = changelog_value_bytes(bootstrap, changelog, f"O-{run}-".encode())
    return OpenTicketsRun(tickets, before, after, stored / keys if keys else float("nan"))


@dataclass(frozen=True)
class ScrapeRun:
    seconds: list[float]
    body_bytes: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def measure_scrape(worker: WorkerProcess, interval_s: float, scrapes: int = 10) -> ScrapeRun:
    """GET /metrics `scrapes` times, each after the render cache has expired: every one a
    full rendering, as a Prometheus scrape every 15 s is."""
    seconds = []
    size = 0
    for _ in range(scrapes):
        time.sleep(interval_s + 0.05)
        t = time.perf_counter()
        body = worker.get("/metrics")
        seconds.append(time.perf_counter() - t)
        size = len(body)
    return ScrapeRun(seconds, size)


def measure_recovery(
    worker: WorkerProcess, expected_owned: dict[str, int], timeout_s: float = 300
) -> tuple[WorkerProcess, float]:
    """kill -9 the worker and start it again on its state: the seconds from the kill until
    the new process owns every partition and shows the same open tickets as before."""
    text = worker.metrics_text()
    active = active_tickets(text)
    worker.kill()
    killed = time.monotonic()
    again = WorkerProcess.start(worker.env, worker.log_path)
    deadline = killed + timeout_s
    while time.monotonic() < deadline:
        again.check_alive()
        try:
            text = again.metrics_text()
        except OSError:
            time.sleep(0.1)
            continue
        now_owned = owned(text)
        if all(now_owned.get(t, 0) >= n for t, n in expected_owned.items()) and (
            active_tickets(text) == active
        ):
            return again, time.monotonic() - killed
        time.sleep(0.1)
    raise TimeoutError(f"the restarted worker did not recover in {timeout_s:.0f} s")
