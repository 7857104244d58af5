"""Reads the whole KPI topic into the window store, on every worker.

Its own aiokafka consumer with no consumer group: it is assigned every partition of the
topic and reads from the beginning, so each worker sees every closed window, whichever
partitions of the input topics it owns. It commits nothing; after a restart it reads
the (compacted) topic again. On an error it logs one line, waits and goes on from the
offsets it had reached. It runs until cancelled (the worker stopping).

It connects as the worker's own clients do: run as a Faust task (`app.task(feed.run)`),
Faust hands it the app, and it takes the app's broker credentials (which `make_app` set
from the security settings, stream/kafka_security.py); `client_options` given to the
constructor (stream.kafka_security.aiokafka_options) take their place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.export.window_store import WindowStore

log = logging.getLogger(__name__)


def apply_record(store: WindowStore, key: bytes | None, value: bytes | None) -> None:
    """One record of the topic: key and value as Kafka holds them."""
    if key is None:
        store.skipped += 1
        return
    try:
        text = key.decode()
        message = None if value is None else orjson.loads(value)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        store.skipped += 1
        return
    store.apply(text, message)


class KpiTopicFeed:
    """Follows `topic` into `store`; `lag_records` is what it has not read yet."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        store: WindowStore,
        retry_s: float = 5.0,
        *,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.store = store
        self.retry_s = retry_s
        self.client_options = client_options
        self.lag_records: int | None = None  # None until the first fetch
        self._next: dict[TopicPartition, int] = {}

    async def run(self, app: Any = None) -> None:
        """Follow the topic until cancelled; `app` is the Faust app running this task."""
        options = self._options(app)
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id="kpi-stream-window-store",
                **options,
            )
            try:
                await consumer.start()
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log, wait, go on
                log.warning(
                    "reading %s into the window store failed (%s: %s); again in %.0f s",
                    self.topic,
                    type(exc).__name__,
                    exc,
                    self.retry_s,
                )
            finally:
                await _stop_quietly(consumer)
            await asyncio.sleep(self.retry_s)

    def _options(self, app: Any) -> Mapping[str, Any]:
        """The security arguments: the constructor's, else those of the app's clients."""
        if self.client_options is not None:
            return self.client_options
        if app is None:
            return {}
        # The function Faust builds its own aiokafka consumers' arguments with.
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

        return credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        # Asked first: aiokafka retries the metadata of a missing topic in a tight loop.
        if self.topic not in await consumer.topics():
            raise LookupError(f"topic {self.topic!r} is not on the broker")
        # Partition 0 first, so that the client fetches the topic's metadata.
        consumer.assign([TopicPartition(self.topic, 0)])
        numbers = None
        for _ in range(100):
            numbers = consumer.partitions_for_topic(self.topic)
            if numbers:
                break
            await asyncio.sleep(0.1)
        if not numbers:
            raise LookupError(f"no partitions of topic {self.topic!r} in the broker's metadata")
        assigned = [TopicPartition(self.topic, n) for n in sorted(numbers)]
        consumer.assign(assigned)
        fresh = [tp for tp in assigned if tp not in self._next]
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        for tp in assigned:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
        log.info("reading %s (%d partitions) into the window store", self.topic, len(assigned))
        while True:
            batches: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    apply_record(self.store, record.key, record.value)
                if records:
                    self._next[tp] = records[-1].offset + 1
            lag = 0
            for tp in assigned:
                highwater = consumer.highwater(tp)
                if highwater is None:  # nothing fetched from it yet
                    break
                lag += max(highwater - await consumer.position(tp), 0)
            else:
                self.lag_records = lag


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except Exception as exc:  # closing is best effort
        log.debug("closing the window-store consumer: %s", exc)
