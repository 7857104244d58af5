"""Freshness: how long after an event is produced /metrics shows it.

A live feed (simulated help-desk and order events, event time = now) is sent at a
fixed rate, half the worker's measured maximum. Among it, every 100 ms, a probe: a
`ticket.created` in the queue `bench-probe`, all probes sent to one partition so the
worker processes them in the order sent. Probe k is reflected in /metrics once
`kpistream_tickets_active{queue="bench-probe"}` summed over priority and status reaches
k; /metrics is polled every 20 ms, so a figure is at most 20 ms late. The freshness of
a probe is (first poll showing it) - (the moment the producer was handed it): the
producer's batching, the broker, the fetch, processing and /metrics rendering.

The figure is the worker's steady state at that rate. The feed starts with the worker
process, which then takes seconds to come up (imports, the group join, the assignment)
while the feed piles up; how long a worker takes to come up is the recovery figure.
So the probes that count are those sent from `warmup_s` after the worker caught up:
once it has shown a probe within half a second of its sending and its consumer lag
(`kpistream_consumer_lag_records`, every topic it reads) is under a quarter of a second
of the feed. (The lag alone is not enough: it counts from the newest offsets the worker
has fetched, and right after the start those are behind too.) A worker that does not
catch up within `catch_up_timeout_s` (it is slower than the rate) is measured from then
on, and the run says so.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
import warnings
from dataclasses import dataclass

import orjson

from benchmarks.harness.processes import WorkerProcess
from stream.kpi.timefmt import format_rfc3339_ms
from stream.local.simulator import SimConfig, simulate

PROBE_QUEUE = "bench-probe"
_ACTIVE = re.compile(
    r'^kpistream_tickets_active\{[^}]*queue="' + PROBE_QUEUE + r'"[^}]*\} (\S+)$', re.M
)

_LAG = re.compile(r"^kpistream_consumer_lag_records\{[^}]*\} (\S+)$", re.M)


@dataclass(frozen=True)
class FreshnessRun:
    rate_per_second: float  # the feed's target rate
    sent_per_second: float  # what the producer reached
    probes: int  # probes measured (sent after the warm-up)
    latencies_s: list[float]
    warmup_s: float  # from the feed's start to the first measured probe
    caught_up: bool  # False: the worker never caught up with the feed's start

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_value(number: int, now_ms: int, run: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"probe-{run}-{number}",
            "type": "ticket.created",
            "occurred_at": format_rfc3339_ms(now_ms),
            "schema_version": 1,
            "ticket_id": f"P-{run}-{number}",
            "customer_id": f"probe-customer-{number}",
            "queue": PROBE_QUEUE,
            "priority": "normal",
            "channel": "web",
        }
    )


def probes_shown(text: str) -> int:
    return int(sum(float(v) for v in _ACTIVE.findall(text)))


def lag_records(text: str) -> int | None:
    """The worker's consumer lag over every topic it reads; None before it reports one."""
    values = _LAG.findall(text)
    return int(sum(float(v) for v in values)) if values else None


def measure_freshness(
    worker: WorkerProcess,
    bootstrap: str,
    helpdesk_topic: str,
    orders_topic: str,
    rate: float,
    seconds: float,
    probe_every_s: float = 0.1,
    warmup_s: float = 2.0,
    start_timeout_s: float = 120.0,
    catch_up_timeout_s: float = 120.0,
) -> FreshnessRun:
    """Feed `rate` messages/s, probes included, until the worker has caught up with its
    start, then `warmup_s` more, then `seconds` measured; return the freshness of each
    measured probe."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=5, client_id="kpi-bench-freshness"
    )
    run = uuid.uuid4().hex[:8]
    sent_at: list[float] = []  # probe k-1's hand-over time
    shown_at: dict[int, float] = {}
    stop = threading.Event()

    lag: list[int | None] = [None]  # the last poll's
    prompt = threading.Event()  # a probe was shown within 0.5 s of its sending

    def poll() -> None:
        shown = 0
        while True:
            try:
                text = worker.metrics_text()
                now_shown = probes_shown(text)
                lag[0] = lag_records(text)
            except OSError:  # a poll that failed: the next one counts
                now_shown = shown
            t = time.time()
            for k in range(shown + 1, now_shown + 1):
                shown_at[k] = t
                if t - sent_at[k - 1] < 0.5:
                    prompt.set()
            shown = max(shown, now_shown)
            if stop.is_set() and (shown >= len(sent_at) or t > stop_at[0] + 10):
                return  # all shown, or a probe never shown (reported as missing)
            time.sleep(0.02)

    stop_at = [float("inf")]
    poller = threading.Thread(target=poll, name="freshness-poll", daemon=True)
    poller.start()
    config = SimConfig.for_rate(rate, seed=3, start_ms=int(time.time() * 1000))
    feed = (m for m in simulate(config) if m.kind == "event")
    names = {"helpdesk": helpdesk_topic, "orders": orders_topic}
    started = time.monotonic()
    next_probe = started
    sent = 0
    measured_from: float | None = None  # monotonic; probes sent from then on count
    first_measured = 0  # the number of the first measured probe
    sent_measured = 0
    caught_up = True
    caught_up_lag = max(10, int(rate / 4))
    try:
        while True:
            now = time.monotonic()
            elapsed = now - started
            if measured_from is None:
                behind = lag[0]
                if prompt.is_set() and behind is not None and behind <= caught_up_lag:
                    measured_from = now + warmup_s
                elif not shown_at and elapsed > start_timeout_s:
                    raise RuntimeError(f"no probe reached /metrics in {start_timeout_s:.0f} s")
                elif elapsed > start_timeout_s + catch_up_timeout_s:
                    measured_from, caught_up = now, False
            elif now >= measured_from + seconds:
                break
            due = int(elapsed * rate)
            while sent < due:
                m = next(feed)
                producer.send(names[m.topic], key=m.key, value=m.value)
                sent += 1
            if time.monotonic() >= next_probe:
                number = len(sent_at) + 1
                now_ms = int(time.time() * 1000)
                value = probe_value(number, now_ms, run)
                sent_at.append(time.time())
                producer.send(helpdesk_topic, key=f"P-{run}".encode(), value=value, partition=0)
                sent += 1
                next_probe += probe_every_s
                measuring = measured_from is not None and time.monotonic() >= measured_from
                if measuring and not first_measured:
                    first_measured, sent_measured = number, sent - 1
            time.sleep(0.001)
        producer.flush(timeout=30)
    finally:
        stop_at[0] = time.time()
        stop.set()
        poller.join(timeout=20)
        producer.close(timeout=10)
    measured = range(first_measured, len(sent_at) + 1)
    latencies = [shown_at[k] - sent_at[k - 1] for k in measured if k in shown_at]
    missing = len(measured) - len(latencies)
    if missing:
        raise RuntimeError(f"{missing} of {len(measured)} probes never reached /metrics")
    assert measured_from is not None
    return FreshnessRun(
        rate,
        (sent - sent_measured) / seconds,
        len(measured),
        latencies,
        measured_from - started,
        caught_up,
    )
