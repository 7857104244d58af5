"""Faust's table recovery, with the stream partitions resumed in a safe order.

faust-streaming 0.15 ends a recovery (`Recovery.on_recovery_completed`) by resuming the
input partitions, seeking them to their committed offsets, and only then calling
`app.flow_control.resume()`, which *clears every stream's queue*. The fetcher is running
during the seek (it read the changelogs), so records of the input partitions already
sit in the queues when they are cleared: they vanish, yet the consumer's read offsets
have moved past them, so they are never fetched again. Measured here after a SIGKILL:
the merge lost 20 window partials in one run; a help-desk partition lost every event of
34 minutes of event time in another (issue 4's "missing partition's share").

This subclass does the same steps in an order where nothing can be lost: seek while the
input partitions are still paused, clear the queues (`flow_control.resume`), and only
then resume the partitions and the flow. Installed through Faust's `TableManager`
setting (see stream/app.py); the rest of Faust's recovery is unchanged.

That seek only helps a partition that has a committed offset. Two more faults of Faust
0.15 with aiokafka 0.14 skip records of partitions that have none yet (a worker killed
before its first commit, a partition nothing was ever committed for), and
`SeekSafeConsumer` mends both:

- Faust hands aiokafka its live set of active partitions (`fetched_records(partitions)`);
  when the recovery pauses the changelog partitions while that fetch waits, the set
  becomes empty, and aiokafka reads an empty set as "every partition": it returns and
  consumes the records it prefetched for the paused input partitions, which Faust then
  throws away (they are not active). Measured after a SIGKILL: a help-desk partition's
  first 4,641 records, and 3,133 window partials (every window of 3.5 days of event time
  never reached the KPI topic). Our fetch takes a copy of the set and asks for nothing
  when it is empty.
- Faust's "seek to committed" (`perform_seek`, at the end of each recovery and when a
  fetch returns while the flow is stopped) calls aiokafka's `seek_to_committed`, which
  leaves a partition without a committed offset (or with offset 0) where its position
  got to, past any record Faust dropped. Ours seeks those input partitions to their
  beginning, which is where `consumer_auto_offset_reset="earliest"` starts them: at
  least once, as a committed partition is (re-delivered events are deduplicated).
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer


class OrderedRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust's `on_recovery_completed`, input partitions resumed last."""
        app: Any = self.app
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._resume_inputs(app)
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """Faust's `_resume_streams` (recovery with nothing to recover), same order."""
        app: Any = self.app
        await app.on_rebalance_complete.send()
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._resume_inputs(app)
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_inputs(self, app: Any) -> None:
        consumer = app.consumer
        assignment = consumer.assignment()
        if assignment:
            # While the input partitions are paused: no record of theirs is fetched
            # from an offset other than the committed one.
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        self.completed.set()
        # Clears the stream queues: nothing of the input partitions is in them yet.
        app.flow_control.resume()
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        consumer.resume_flow()
        await app._fetcher.maybe_start()


class OrderedTableManager(TableManager):
    """Faust's table manager with `OrderedRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = OrderedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class SeekSafeConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread; no fetch or seek leaves a record behind."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust asks for fetch_max_wait_ms=1500, and aiokafka keeps one fetch in flight
        # per broker: a fetch of idle partitions (the partials, the indicators, a quiet
        # input) held 1.5 s at the broker delays the next fetch of the busy ones, so
        # their records waited up to 1.5 s before being read (measured: 0.85 s at 700
        # events/s). The worker's setting replaces it; aiokafka reads it in start().
        # An app that is not a FlushSafeApp (none in the worker) keeps what Faust asked.
        consumer._fetch_max_wait_ms = getattr(
            self.app, "fetch_max_wait_ms", consumer._fetch_max_wait_ms
        )
        return consumer

    async def getmany(self, active_partitions: Any, timeout: float) -> Any:
        """Records of the partitions active now, never of others.

        A copy, taken here on the event loop that pauses and resumes partitions: the
        fetch runs on the consumer's thread and may wait `timeout` for records, and
        aiokafka reads an empty (emptied) set as every assigned partition."""
        if active_partitions is not None:
            active_partitions = frozenset(active_partitions)
            if not active_partitions:
                return {}
        return await super().getmany(active_partitions, timeout)

    async def seek_to_committed(self) -> Any:
        """Seek to the committed offsets; input partitions without one (or with 0) to
        their beginning, where they would start (aiokafka leaves them where they are)."""
        # The recovery positions the changelog partitions itself.
        changelogs = frozenset(self.app.tables.changelog_topics)
        return await self.call_thread(self._seek_to_committed_or_beginning, changelogs)

    async def _seek_to_committed_or_beginning(self, changelogs: frozenset[str]) -> Any:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            for tp, offset in committed.items():
                if not offset and tp.topic not in changelogs:
                    # Offset 0 at once (seek_to_beginning would wait for a fetch in
                    # flight, a second at each start); if the log starts later, the
                    # fetch is out of range and the consumer resets to the earliest.
                    consumer.seek(tp, 0)
        return committed

    async def committed_offsets(self, partitions: Any) -> dict[Any, int | None]:
        """The group's committed offsets of `partitions` (None: nothing committed)."""
        return dict(await self.call_thread(self._committed_offsets, list(partitions)))

    async def _committed_offsets(self, partitions: list[Any]) -> dict[Any, int | None]:
        consumer = self._ensure_consumer()
        return {tp: await consumer.committed(tp) for tp in partitions}


class SeekSafeConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with `SeekSafeConsumerThread` (see stream/durable_flush.py
    for where the app builds it)."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return SeekSafeConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _handle_attached(self, commit_offsets: Any) -> None:
        """Faust's last step before a commit flushes the producer: the app's
        `before_commit` hooks first (durable_flush.FlushSafeApp), after the offsets to
        commit were chosen, so what they send covers every event those offsets do."""
        for hook in getattr(self.app, "before_commit", ()):
            await hook()
        await super()._handle_attached(commit_offsets)

    async def committed_offsets(self, *partitions: Any) -> dict[Any, int | None]:
        """Where the group resumes each partition (stream/agents.py's catch-up)."""
        thread: Any = self._thread
        return dict(await thread.committed_offsets(partitions))
