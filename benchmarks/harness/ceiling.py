"""The raw ceiling: a plain aiokafka consumer that fetches and decodes, nothing more.

What any Python consumer of these topics pays before doing work: the fetch, the
record batches' parsing (aiokafka's C extension) and an orjson decode of every value.
No consumer group (partitions assigned by hand), so nothing is committed either.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True)
class CeilingRun:
    messages: int
    seconds: float
    decode_errors: int

    @property
    def events_per_second(self) -> float:
        return self.messages / self.seconds


async def _consume(bootstrap: str, topics: list[str], expected: int) -> CeilingRun:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Faust's defaults for the worker's consumer, so both fetch alike.
        max_partition_fetch_bytes=1024 * 1024,
        fetch_max_bytes=50 * 1024 * 1024,
    )
    await consumer.start()
    try:
        # Subscribing to nothing: the client fetches these topics' metadata only when asked.
        for topic in topics:
            await consumer._client._wait_on_metadata(topic)
        parts = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer._client.cluster.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = errors = 0
        started = None
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batches:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    try:
                        orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        errors += 1
                    seen += 1
        assert started is not None
        return CeilingRun(seen, time.perf_counter() - started, errors)
    finally:
        await consumer.stop()


def measure_ceiling(bootstrap: str, topics: list[str], expected: int) -> CeilingRun:
    """Consume `expected` messages of `topics` from the beginning; the time from the first
    fetch that returned records to the last record decoded."""
    return asyncio.run(_consume(bootstrap, topics, expected))
