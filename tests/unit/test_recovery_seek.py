"""A restarted worker must start an input partition that has no committed offset yet (the
last worker was killed before its first commit) at its beginning, like a fresh one.

Faust 0.15 with aiokafka 0.14 skipped records of such partitions (stream/recovery.py):
the fetch that waits while the recovery pauses the changelog partitions is handed Faust's
live set of active partitions, which the pause empties, and aiokafka reads an empty set
as every partition, so it consumes the records it prefetched for the (paused) input
partitions, which Faust drops; the seek to the committed offsets that follows leaves a
partition without one where it is. Measured in the fault suite's five-kills test with the
memory store: 3,133 window partials (every window of the first 3.5 days of event time)
and a help-desk partition's first 4,641 events never processed.

These run aiokafka's own `fetched_records`, `seek_to_committed` and `seek` against a
fetcher and group coordinator that stand in for the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.structs import OffsetAndMetadata
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stream.recovery import SeekSafeConsumerThread

CHANGELOG = TopicPartition("kpi-window_merge-changelog", 0)
PARTIALS = TopicPartition("kpi.window-partials", 0)
HELPDESK = TopicPartition("kpi.helpdesk.events", 0)
TOPICS = (CHANGELOG, PARTIALS, HELPDESK)


class Records:
    """A prefetched batch of one partition's records (aiokafka's PartitionRecords)."""

    def __init__(self, offsets: range) -> None:
        self.offsets = iter(offsets)
        self.next_fetch_offset = offsets.start

    def __iter__(self) -> Iterator[Any]:
        for offset in self.offsets:
            self.next_fetch_offset = offset + 1
            yield SimpleNamespace(offset=offset)


class PartitionState:
    """aiokafka's TopicPartitionState, its position kept in the broker's table."""

    def __init__(self, broker: FakeBroker, tp: TopicPartition) -> None:
        self.broker, self.tp, self.paused = broker, tp, False

    @property
    def position(self) -> int:
        return self.broker.position[self.tp]

    def consumed_to(self, offset: int) -> None:
        self.broker.position[self.tp] = offset


class FakeBroker:
    """What aiokafka's consumer methods need of its fetcher, subscription, assignment and
    group coordinator; positions and committed offsets by partition."""

    def __init__(
        self, position: dict[TopicPartition, int], committed: dict[TopicPartition, int]
    ) -> None:
        self.position = position
        self.committed_offsets = committed
        self._records: dict[TopicPartition, FetchResult] = {}
        self.waiter: asyncio.Future[None] | None = None

    # -- the consumer (AIOKafkaConsumer's own methods run on this object) --------
    seek_to_committed = AIOKafkaConsumer.seek_to_committed
    seek = AIOKafkaConsumer.seek
    committed = AIOKafkaConsumer.committed
    _group_id = "kpi"
    _closed = False
    _max_poll_records = None

    @property
    def _fetcher(self) -> FakeBroker:
        return self

    @property
    def _subscription(self) -> FakeBroker:
        return self

    @property
    def _subscriptions(self) -> FakeBroker:
        return self

    @property
    def _coordinator(self) -> FakeBroker:
        return self

    # -- the fetcher (Fetcher.fetched_records runs on this object) ----------------
    fetched_records = Fetcher.fetched_records
    _wait_consume_future = None
    reassignment_in_progress = False

    def _notify(self, future: Any) -> None:
        """aiokafka's fetcher wakes its waiters here; this stand-in has none."""

    def _create_fetch_waiter(self) -> asyncio.Future[None]:
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    @contextlib.contextmanager
    def fetch_context(self) -> Iterator[None]:
        yield

    def seek_to(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset
        self._records.pop(tp, None)

    # -- the subscription -----------------------------------------------------------
    def assigned_partitions(self) -> set[TopicPartition]:
        return set(TOPICS)

    def is_assigned(self, tp: TopicPartition) -> bool:
        return True

    # -- the group coordinator ----------------------------------------------------------
    async def fetch_committed_offsets(self, tps: list[TopicPartition]) -> dict[Any, Any]:
        return {
            tp: OffsetAndMetadata(self.committed_offsets[tp], "")
            for tp in tps
            if tp in self.committed_offsets
        }

    # -- the assignment (what a FetchResult checks before it hands records out) ----------
    active = True

    def state_value(self, tp: TopicPartition) -> PartitionState:
        return PartitionState(self, tp)

    def buffer(self, tp: TopicPartition, offsets: range) -> None:
        """Records prefetched from the partition's position on."""
        assert offsets.start == self.position[tp]
        self._records[tp] = FetchResult(
            tp, assignment=self, partition_records=Records(offsets), backoff=0
        )


def consumer_thread(cls: type[AIOKafkaConsumerThread], broker: FakeBroker) -> Any:
    """A consumer thread of `cls` on `broker`; its calls run on the test's loop."""
    thread: Any = cls.__new__(cls)

    async def call_thread(fun: Any, *args: Any, **kwargs: Any) -> Any:
        return await fun(*args, **kwargs)

    thread.call_thread = call_thread
    thread._ensure_consumer = lambda: broker
    thread.consumer = SimpleNamespace(flow_active=True)
    thread.app = SimpleNamespace(
        tables=SimpleNamespace(changelog_topics={CHANGELOG.topic}),
        conf=SimpleNamespace(consumer_auto_offset_reset="earliest"),
    )
    return thread


def fetch_while_recovery_ends(cls: type[AIOKafkaConsumerThread]) -> tuple[dict[Any, Any], Any]:
    """A fetch for the changelog partition (the recovery reads it) is waiting when the
    recovery ends: it pauses the changelog partition, and records of the paused input
    partitions arrive. Returns (what the fetch returned, the broker)."""

    async def run() -> tuple[dict[Any, Any], Any]:
        broker = FakeBroker(position={tp: 0 for tp in TOPICS}, committed={})
        thread = consumer_thread(cls, broker)
        active = {CHANGELOG}  # Faust's live set of active partitions
        fetch = asyncio.ensure_future(thread.getmany(active, timeout=0.3))
        await asyncio.sleep(0.05)  # the fetch waits for records of the changelog
        active.discard(CHANGELOG)  # recovery done: consumer.pause_partitions(changelogs)
        broker.buffer(PARTIALS, range(0, 3133))
        broker.buffer(HELPDESK, range(0, 4641))
        assert broker.waiter is not None
        broker.waiter.set_result(None)
        return await fetch, broker

    return asyncio.run(run())


def test_faust_fetch_consumes_paused_partitions_when_the_pause_empties_its_set() -> None:
    # The Faust/aiokafka behaviour SeekSafeConsumerThread.getmany works around: if this
    # fails, they fixed it.
    records, broker = fetch_while_recovery_ends(AIOKafkaConsumerThread)
    assert {tp: len(r) for tp, r in records.items()} == {PARTIALS: 3133, HELPDESK: 4641}
    assert broker.position[PARTIALS] == 3133


def test_a_fetch_returns_no_record_of_a_partition_paused_meanwhile() -> None:
    records, broker = fetch_while_recovery_ends(SeekSafeConsumerThread)
    assert records == {}
    # Still prefetched, still where it was: delivered once the partition is resumed.
    assert broker.position == {tp: 0 for tp in TOPICS}
    assert set(broker._records) == {PARTIALS, HELPDESK}


def seek_after_dropped_records(cls: type[AIOKafkaConsumerThread]) -> dict[TopicPartition, int]:
    """Positions after `seek_to_committed` (Faust's `perform_seek`), for partitions whose
    records were consumed from the client and dropped up to offset 3133 (partials: never
    committed), 4641 (help desk: committed 0) and 900 (the changelog: the recovery's)."""

    async def run() -> dict[TopicPartition, int]:
        position = {PARTIALS: 3133, HELPDESK: 4641, CHANGELOG: 900}
        broker = FakeBroker(position=position, committed={HELPDESK: 0})
        await consumer_thread(cls, broker).seek_to_committed()
        return broker.position

    return asyncio.run(run())


def test_faust_seek_to_committed_leaves_a_partition_without_commit_where_it_is() -> None:
    # aiokafka's seek_to_committed seeks only to a committed offset above 0.
    assert seek_after_dropped_records(AIOKafkaConsumerThread)[PARTIALS] == 3133


def test_the_seek_takes_a_partition_without_commit_back_to_its_beginning() -> None:
    positions = seek_after_dropped_records(SeekSafeConsumerThread)
    assert positions[PARTIALS] == 0
    assert positions[HELPDESK] == 0
    # The recovery positions the changelogs.
    assert positions[CHANGELOG] == 900


@pytest.mark.parametrize("committed", [17, 3000])
def test_a_committed_partition_is_sought_to_its_commit(committed: int) -> None:
    async def run() -> int:
        position = {PARTIALS: 3133, HELPDESK: 0, CHANGELOG: 0}
        broker = FakeBroker(position=position, committed={PARTIALS: committed})
        await consumer_thread(SeekSafeConsumerThread, broker).seek_to_committed()
        return broker.position[PARTIALS]

    assert asyncio.run(run()) == committed


@pytest.mark.parametrize(("setting", "expected_ms"), [(None, 100), ("250ms", 250)])
def test_the_consumer_fetch_waits_at_most_the_setting_not_faust_s_1500_ms(
    setting: str | None, expected_ms: int
) -> None:
    # One fetch in flight per broker: a fetch held for idle partitions delays the busy
    # ones by this long (measured 0.85 s of record age at 700 events/s with 1.5 s).
    from stream.app import make_app
    from stream.settings import Settings

    settings = Settings() if setting is None else Settings(fetch_max_wait=setting)
    app = make_app(settings)

    async def build() -> Any:
        thread: Any = app.consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, SeekSafeConsumerThread)
        return thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(build())
    assert consumer._fetch_max_wait_ms == expected_ms


def test_the_apps_before_commit_hooks_run_after_the_offsets_are_chosen_before_the_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's commit: offsets chosen, `_handle_attached`, then the producer's flush and
    the commit. The hooks (held activity batches) run at `_handle_attached`."""
    from faust.transport.drivers.aiokafka import Consumer as FaustConsumer

    from stream.recovery import SeekSafeConsumer

    order: list[str] = []

    async def faust_attached(self: Any, offsets: Any) -> None:
        order.append(f"attached {offsets}")

    monkeypatch.setattr(FaustConsumer, "_handle_attached", faust_attached)

    async def hook() -> None:
        order.append("hook")

    consumer: Any = SeekSafeConsumer.__new__(SeekSafeConsumer)
    consumer.app = SimpleNamespace(before_commit=[hook, hook])
    asyncio.run(consumer._handle_attached({"tp": 5}))
    assert order == ["hook", "hook", "attached {'tp': 5}"]
