"""A producer buffer whose flush waits until every message is handed to the client.

Faust commits input offsets after `producer.flush()`, which should make every changelog
record of the committed events durable first. But Faust 0.15's `ProducerBuffer.flush`
gives up as soon as no message was sent for 0.1 s (`flush_atmost` returns on the first
timeout) and does not count the message being handed over at that moment; the aiokafka
flush that follows then waits only for what it was given. Under load (the log says
"producer buffer full") offsets were committed with changelog records still in the
buffer: a kill -9 then lost their state for good with the memory store (measured: the
fault suite's five-kills test, 40,283 wrong windows), and with RocksDB on any worker
that rebuilds the partition from its changelog.

`DurableFlushBuffer.flush` keeps waiting while messages are queued or in flight.
`FlushSafeApp` is `faust.App` with that buffer in its producer, and with the consumer of
stream/recovery.py (`SeekSafeConsumer`: no fetch or seek skips records of a partition
that has no committed offset yet).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import ConsumerT, ProducerT

from stream.recovery import SeekSafeConsumer


class DurableFlushBuffer(ProducerBuffer):
    _in_flight = 0

    async def _send_pending(self, fut: Any) -> None:
        # Taken off the queue (no longer in `size`) but not yet handed to the client.
        self._in_flight += 1
        try:
            await super()._send_pending(fut)
        finally:
            self._in_flight -= 1

    async def flush(self) -> None:
        """Until every queued message is handed to the client (which the producer's own
        flush then waits for)."""
        while self.size or self._in_flight:
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running")
            self.message_sent.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


class FlushSafeApp(faust.App):
    # The consumer's fetch_max_wait_ms (stream/recovery.py; settings.fetch_max_wait).
    fetch_max_wait_ms: int = 1500

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Run before input offsets are committed, ahead of the producer's flush: what
        # the agents hold back to send in batches (stream/activity_batches.py) is handed
        # to the producer, so the flush makes it durable with the changelog records.
        self.before_commit: list[Callable[[], Awaitable[Any]]] = []

    def _new_producer(self) -> ProducerT:
        producer = super()._new_producer()
        old: Any = producer.buffer
        buffer = DurableFlushBuffer(loop=old.loop, beacon=old.beacon)
        buffer.app = old.app
        if getattr(old, "threaded_producer", None) is not None:
            buffer.threaded_producer = old.threaded_producer
        producer.buffer = buffer
        return producer

    def _new_consumer(self) -> ConsumerT:
        transport = self.transport
        if not isinstance(transport, aiokafka_driver.Transport):
            return super()._new_consumer()
        # What `transport.create_consumer` builds, with our consumer class.
        return SeekSafeConsumer(
            transport,
            callback=self.topics.on_message,
            loop=transport.loop,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
        )
