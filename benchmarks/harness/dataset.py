"""The benchmark's input: simulated help-desk and order events, pre-loaded once.

The same seeded simulator as `kpi simulate`, at a large help desk's rate of event time,
written to two topics of the benchmark's own broker. A marker file records what the
topics hold, so a second `kpi bench` on the same broker state reuses them.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from stream.local.broker import create_topics
from stream.local.simulator import SimConfig, SimMessage, simulate
from stream.settings import TopicSpec

# 2026-11-02T00:00:00Z: a Monday, so the day curve starts at a night.
START_MS = 1_793_577_600_000


@dataclass(frozen=True)
class Dataset:
    """What the pre-loaded topics hold."""

    helpdesk_topic: str
    orders_topic: str
    partitions: int
    messages: int  # both topics
    helpdesk_messages: int
    order_messages: int
    seed: int
    events_per_second: float  # simulated event time: mean events per second
    first_event_ms: int
    last_event_ms: int

    @property
    def event_span_hours(self) -> float:
        return (self.last_event_ms - self.first_event_ms) / 3_600_000


def sim_config(rate: float, seed: int) -> SimConfig:
    """A large help desk, with the faults a real feed has (1 % duplicates, 0.1 % broken)."""
    return SimConfig.for_rate(
        rate,
        seed=seed,
        start_ms=START_MS,
        duplicate_share=0.01,
        malformed_share=0.001,
        late_share=0.01,
    )


def messages(count: int, rate: float, seed: int) -> Iterator[SimMessage]:
    return itertools.islice(simulate(sim_config(rate, seed)), count)


def _producer(bootstrap: str):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=50,
        batch_size=1024 * 1024,
        compression_type=None,
        max_in_flight_requests_per_connection=5,
        client_id="kpi-bench-preload",
    )


def ensure_dataset(
    bootstrap: str,
    marker: Path,
    *,
    count: int,
    rate: float,
    seed: int,
    partitions: int,
    prefix: str = "bench",
    progress: bool = True,
) -> Dataset:
    """The topics `<prefix>.helpdesk.events` and `<prefix>.orders.events` with `count`
    simulated messages; produced unless the marker says they already hold them."""
    helpdesk_topic, orders_topic = f"{prefix}.helpdesk.events", f"{prefix}.orders.events"
    if marker.exists():
        known = Dataset(**json.loads(marker.read_text()))
        wanted = (count, rate, seed, partitions, helpdesk_topic)
        if (
            known.messages,
            known.events_per_second,
            known.seed,
            known.partitions,
            known.helpdesk_topic,
        ) == wanted:
            return known
        raise RuntimeError(
            f"the benchmark broker already holds another dataset ({marker}): "
            "remove its state directory (kpi bench --fresh)"
        )
    create_topics(
        bootstrap,
        [
            TopicSpec(helpdesk_topic, partitions),
            TopicSpec(orders_topic, partitions),
        ],
    )
    producer = _producer(bootstrap)
    names = {"helpdesk": helpdesk_topic, "orders": orders_topic}
    by_topic = {"helpdesk": 0, "orders": 0}
    first_ms = last_ms = None
    started = time.monotonic()
    try:
        for i, message in enumerate(messages(count, rate, seed)):
            producer.send(names[message.topic], key=message.key, value=message.value)
            by_topic[message.topic] += 1
            if first_ms is None:
                first_ms = message.occurred_at_ms
            last_ms = message.occurred_at_ms
            if progress and i % 100_000 == 99_999:
                rate_now = (i + 1) / (time.monotonic() - started)
                print(f"  pre-loading: {i + 1:,} of {count:,} ({rate_now:,.0f}/s)", flush=True)
    finally:
        producer.flush(timeout=120)
        producer.close(timeout=10)
    dataset = Dataset(
        helpdesk_topic=helpdesk_topic,
        orders_topic=orders_topic,
        partitions=partitions,
        messages=sum(by_topic.values()),
        helpdesk_messages=by_topic["helpdesk"],
        order_messages=by_topic["orders"],
        seed=seed,
        events_per_second=rate,
        first_event_ms=first_ms or START_MS,
        last_event_ms=last_ms or START_MS,
    )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(asdict(dataset), indent=2) + "\n")
    return dataset
