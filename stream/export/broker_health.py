"""Is the broker reachable? A probe that asks Kafka for its metadata every few seconds,
so that an outage shows in /metrics and /health while it lasts (the consumer and the
producer retry on their own and say little until they give up).

`BrokerHealth` is the pure state (fed probe results and the time); `probe_forever` is
the loop that feeds it; `BrokerHealthCollector` exports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 5.0


@dataclass
class BrokerHealth:
    """Probe results over time: reachable now or not, since when, how many outages."""

    reachable: bool | None = None  # None: not probed yet
    since_ms: int | None = None  # when the current state began
    last_contact_ms: int | None = None
    outages_total: int = 0
    last_error: str | None = None

    def observe(self, ok: bool, now_ms: int, error: str | None = None) -> None:
        if ok:
            self.last_contact_ms = now_ms
            self.last_error = None
        else:
            self.last_error = error
        if ok == self.reachable:
            return
        if not ok and self.reachable:
            self.outages_total += 1
        elif not ok and self.reachable is None:
            self.outages_total += 1  # unreachable from the start: an outage too
        self.reachable = ok
        self.since_ms = now_ms

    def outage_seconds(self, now_ms: int) -> float:
        """How long the current outage has lasted; 0 while the broker is reachable."""
        if self.reachable is not False or self.since_ms is None:
            return 0.0
        return max(0.0, (now_ms - self.since_ms) / 1000)

    def as_json(self, now_ms: int) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "outage_seconds": self.outage_seconds(now_ms),
            "last_contact_ms": self.last_contact_ms,
            "outages_total": self.outages_total,
            "error": self.last_error,
        }


async def probe_forever(
    health: BrokerHealth,
    make_client: Callable[[], Any],
    interval_s: float = PROBE_INTERVAL_SECONDS,
    timeout_s: float = PROBE_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every `interval_s`, one metadata request through an aiokafka client; a client
    that cannot bootstrap is thrown away and made again at the next probe."""
    client = None
    try:
        while True:
            ok, error = False, None
            try:
                if client is None:
                    client = make_client()
                    await asyncio.wait_for(client.bootstrap(), timeout_s)
                await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
                ok = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure to reach it is the answer
                error = f"{type(exc).__name__}: {exc}"[:300]
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.close()
                    client = None
            was = health.reachable
            health.observe(ok, int(clock() * 1000), error)
            if was is not False and not ok:
                log.warning("Kafka broker unreachable: %s", error)
            elif was is False and ok:
                log.warning("Kafka broker reachable again")
            await asyncio.sleep(interval_s)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


class BrokerHealthCollector(Collector):
    def __init__(self, health: BrokerHealth, clock: Callable[[], float] = time.time) -> None:
        self.health = health
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        h = self.health
        now_ms = int(self.clock() * 1000)
        up = GaugeMetricFamily(
            "kpistream_broker_up",
            "1 when the last metadata request to Kafka (every 5 s) succeeded, 0 when not.",
        )
        if h.reachable is not None:
            up.add_metric([], 1.0 if h.reachable else 0.0)
        yield up
        yield GaugeMetricFamily(
            "kpistream_broker_outage_seconds",
            "How long Kafka has been unreachable, now; 0 while it is reachable.",
            value=h.outage_seconds(now_ms),
        )
        yield CounterMetricFamily(
            "kpistream_broker_outages",
            "Times the worker lost its connection to Kafka (or could not reach it at start).",
            value=h.outages_total,
        )
        contact = GaugeMetricFamily(
            "kpistream_broker_last_contact_timestamp_seconds",
            "When the worker last reached Kafka (Unix time).",
        )
        if h.last_contact_ms is not None:
            contact.add_metric([], h.last_contact_ms / 1000)
        yield contact
