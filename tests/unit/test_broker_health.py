"""The broker probe's state: outages counted once each, their length, and the loop that
feeds it (with a client that fails on command)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from stream.export.broker_health import BrokerHealth, BrokerHealthCollector, probe_forever
from tests.scrape import scrape


def test_an_outage_counts_once_and_lasts_until_the_broker_answers() -> None:
    h = BrokerHealth()
    h.observe(True, 1_000)
    h.observe(False, 6_000, "KafkaConnectionError: refused")
    h.observe(False, 11_000, "KafkaConnectionError: refused")
    assert h.outages_total == 1
    assert h.outage_seconds(16_000) == 10.0
    assert h.as_json(16_000)["error"] == "KafkaConnectionError: refused"
    h.observe(True, 21_000)
    assert h.outage_seconds(22_000) == 0.0
    assert h.last_contact_ms == 21_000
    assert h.as_json(22_000)["error"] is None
    h.observe(False, 30_000)
    assert h.outages_total == 2


def test_a_broker_unreachable_from_the_start_is_an_outage() -> None:
    h = BrokerHealth()
    h.observe(False, 0, "no broker")
    assert (h.reachable, h.outages_total, h.outage_seconds(5_000)) == (False, 1, 5.0)


def test_the_collector_exports_the_state() -> None:
    h = BrokerHealth()
    registry = CollectorRegistry()
    registry.register(BrokerHealthCollector(h, clock=lambda: 20.0))
    assert "kpistream_broker_up" not in scrape(registry)  # not probed yet: no claim
    h.observe(True, 1_000)
    h.observe(False, 5_000, "down")
    metrics = scrape(registry)
    assert metrics["kpistream_broker_up"] == [({}, 0.0)]
    assert metrics["kpistream_broker_outage_seconds"] == [({}, 15.0)]
    assert metrics["kpistream_broker_outages_total"] == [({}, 1.0)]
    assert metrics["kpistream_broker_last_contact_timestamp_seconds"] == [({}, 1.0)]


class FlakyClient:
    """Answers while `up[0]` is true; counts how often it was made and closed."""

    made = 0
    closed = 0

    def __init__(self, up: list[bool]) -> None:
        self.up = up
        FlakyClient.made += 1

    async def bootstrap(self) -> None:
        if not self.up[0]:
            raise ConnectionError("refused")

    async def fetch_all_metadata(self) -> object:
        if not self.up[0]:
            raise ConnectionError("no metadata")
        return object()

    async def close(self) -> None:
        FlakyClient.closed += 1


def test_the_probe_loop_follows_the_broker_down_and_up_again() -> None:
    up = [True]
    h = BrokerHealth()
    now = [0.0]
    seen: list[bool | None] = []

    async def run() -> None:
        task = asyncio.create_task(
            probe_forever(h, lambda: FlakyClient(up), interval_s=0.01, clock=lambda: now[0])
        )
        for state in (True, False, False, True):
            up[0] = state
            await asyncio.sleep(0.05)
            now[0] += 1
            seen.append(h.reachable)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())
    assert seen == [True, False, False, True]
    assert h.outages_total == 1
    # A failed client is thrown away and made again; every client made is closed.
    assert FlakyClient.made >= 2
    assert FlakyClient.closed == FlakyClient.made
