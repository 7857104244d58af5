"""The agents: decode, call the core, assign to tables, send. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust
import orjson
from aiokafka.errors import MessageSizeTooLargeError
from faust.types import TP

from stream.activity_batches import ActivityBatches
from stream.kpi.merge import StagedState, decode_steps, encode_steps
from stream.runtime import WorkerRuntime
from stream.tables import Tables
from stream.topics import Topics

log = logging.getLogger(__name__)


def dlq_headers(reason: str, detail: str, topic: str, partition: int, offset: int) -> list[Any]:
    """Headers of a dead-letter record: enough to find the original and know why."""
    return [
        ("reason", reason.encode()),
        ("detail", detail.encode("utf-8", "replace")[:1000]),
        ("source_topic", topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]


def register_agents(
    app: faust.App, topics: Topics, tables: Tables, runtime: WorkerRuntime
) -> dict[str, faust.types.AgentT[Any]]:
    """Attach the agents, the window timer and the rebalance hook; returns the agents."""

    # Customer activities, sent a batch per customer partition (activity_batches.py):
    # when one is full, at each tick before the marks, and before offsets are committed.
    batches = ActivityBatches(runtime.settings.partitions)

    # Held from taking batches until the producer has them: a commit (its hook below)
    # waits for batches another task took, so none of a committed event's activities is
    # outside the producer when it flushes.
    handing = asyncio.Lock()

    async def hand(taken: list[tuple[int, bytes]]) -> list[Any]:
        sent = []
        for number, (partition, value) in enumerate(taken):
            try:
                sent.append(await topics.customers.send(value=value, partition=partition))
            except BaseException:  # not in the producer: queued again, never lost
                batches.put_back(taken[number:])
                raise
        return sent

    async def send_activities() -> list[Any]:
        """The queued batches, handed to the producer in order; their pending sends."""
        async with handing:
            return await hand(batches.take())

    async def queue_activities(activities: Sequence[tuple[str, bytes]]) -> None:
        full = False
        for customer, value in activities:
            full = batches.add(customer, value) or full
        if full:
            await send_activities()

    before_commit = getattr(app, "before_commit", None)
    if before_commit is not None:
        before_commit.append(send_activities)

    def record_position(message: Any) -> None:
        """Where a consumer is, for the lag metrics."""
        runtime.record_position(
            message.topic,
            message.partition,
            message.offset,
            int(message.timestamp * 1000) if message.timestamp else None,
        )

    async def dead_letter(event: Any, reason: str, detail: str) -> None:
        """The raw message to the dead-letter topic, with why and where it came from.

        Delivered before the next message is read. A copy too large for the DLQ topic
        (a message near the input's size limit, plus the headers) goes without its
        value, marked `value_dropped`; any other failure is retried until it is in."""
        message = event.message
        value = event.value if event.value is not None else b""
        headers = dlq_headers(reason, detail, message.topic, message.partition, message.offset)
        delay_s = 0.5
        while True:
            try:
                await (await topics.dlq.send(key=message.key, value=value, headers=headers))
                return
            except MessageSizeTooLargeError:
                runtime.metrics.dlq_send_errors.inc()
                log.warning(
                    "dead letter of %s[%d]@%d (%d bytes) too large for %s: sent without its value",
                    message.topic,
                    message.partition,
                    message.offset,
                    len(value),
                    topics.dlq.get_topic_name(),
                )
                headers = [*headers, ("value_dropped", str(len(value)).encode())]
                value = b""
            except Exception as exc:  # the broker refuses or is away: wait, then again
                runtime.metrics.dlq_send_errors.inc()
                log.warning("dead letter not delivered (%s); retrying in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)

    async def deliver_kpi(messages: Sequence[tuple[str, bytes | None]]) -> None:
        """The KPI messages in Kafka, in order, before the state that accounts for them
        is written. A topic that refuses them (or a broker that is away) holds the merge
        here, retrying: back-pressure, the partials wait in Kafka. A retry sends the whole
        list again, so a key's revisions never land out of order."""
        delay_s = 0.5
        while True:
            sent = [await topics.kpi.send(key=key.encode(), value=body) for key, body in messages]
            failures = 0
            for pending in sent:
                try:
                    await pending
                except Exception as exc:  # refused or timed out: all of them go again
                    failures += 1
                    error = exc
            if not failures:
                runtime.metrics.kpi_messages.inc(len(messages))
                return
            runtime.metrics.kpi_send_errors.inc(failures)
            log.warning(
                "%d of %d KPI messages not delivered (%s); retrying in %.1f s",
                failures,
                len(messages),
                error,
                delay_s,
            )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 30.0)

    @app.agent(topics.helpdesk, name="helpdesk-events")
    async def helpdesk_events(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            record_position(message)
            result = runtime.process_helpdesk(
                event.value, message.partition, tables.tickets, tables.scopes
            )
            if result.rejection is not None:
                await dead_letter(event, result.rejection.reason.value, result.rejection.detail)
                continue
            for key, value in result.state_writes.items():
                if value is not None:
                    tables.kpi_state[key] = value
                elif key in tables.kpi_state:
                    del tables.kpi_state[key]
            await queue_activities(result.activities)

    @app.agent(topics.orders, name="order-events")
    async def order_events(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            record_position(message)
            result = runtime.process_order(event.value, message.partition, tables.orders)
            await queue_activities(result.activities)
            if result.rejection is not None:
                await dead_letter(event, result.rejection.reason.value, result.rejection.detail)
                continue
            for key, value in result.state_writes.items():
                tables.kpi_state[key] = value

    @app.agent(topics.indicators, name="indicator-events")
    async def indicator_events(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            record_position(message)
            result = runtime.process_indicator(event.value)
            if result.dlq is not None:
                await dead_letter(event, *result.dlq)
                continue
            sent = [
                await topics.kpi.send(key=k.encode(), value=None if b is None else orjson.dumps(b))
                for k, b in result.kpi_messages
            ]
            # A customer count also goes to the merge (H8's customer base).
            sent += [
                await topics.partials.send(value=orjson.dumps(m))
                for m in runtime.merge_inputs(result)
            ]
            for pending in sent:
                await pending
            # After the KPI messages are in Kafka: a crash in between repeats the report
            # (a duplicate only once the table has it).
            for name, entry in result.state_writes.items():
                tables.indicators[name] = entry

    @app.agent(topics.customers, name="customer-activity")
    async def customer_activity(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            record_position(message)
            result = runtime.process_customer(
                event.value or b"", message.partition, tables.customers
            )
            # A batch with a bad item had the others applied: their marks are kept too.
            for key, value in result.state_writes.items():
                tables.kpi_state[key] = value
            if result.malformed is not None:
                await dead_letter(event, "internal_message", result.malformed)

    @app.timer(1.0, name="tick")
    async def tick() -> None:
        messages = runtime.tick(
            tickets=tables.tickets, orders=tables.orders, customers=tables.customers
        )
        # The input partitions' time, for the customer partitions (customer_flow.py),
        # taken with the queued activities, no await between: every activity of the
        # events these marks cover is sent before them (activity_batches.py).
        async with handing:
            activities, marks = batches.take(), runtime.upstream_marks()
            sent = await hand(activities)
        sent += [await topics.partials.send(value=value) for value in encode_steps(messages)]
        sent += [await topics.customers.send(value=value, partition=p) for p, value in marks]
        # Delivered before the marks that follow them are persisted (at the partition's
        # next event): a crash in between re-sends them, never loses them.
        for pending in sent:
            await pending
        runtime.partials_delivered()

    @app.agent(topics.partials, name="merge-windows")
    async def merge_windows(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            record_position(event.message)
            # The merge's state may not run ahead of its output (see StagedState): the
            # writes wait until Kafka has the KPI messages they account for. A message
            # holds a tick's steps: they share one staged layer, written once.
            staged = StagedState(tables.window_merge)
            out = []
            for step in decode_steps(event.value):
                out += runtime.merge_step(step, staged)
            await deliver_kpi(
                [(key, None if body is None else orjson.dumps(body)) for key, body in out]
            )
            staged.commit()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust stubs want a sync signature
    async def stop_exporting(sender: Any, *args: Any, **kwargs: Any) -> None:
        # From now until the rebalance completes another worker may own (and export)
        # these partitions: showing them here too would count them twice in a sum.
        runtime.pause_export()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # faust stubs want a sync signature
    async def reload_partitions(sender: Any, *args: Any, **kwargs: Any) -> None:
        assigned = app.assignor.assigned_actives()
        actives = [tp.partition for tp in assigned if tp.topic == runtime.settings.helpdesk_topic]
        state = list(tables.kpi_state.items())
        runtime.load_partitions(
            actives, state, list(tables.tickets.items()), list(tables.scopes.items())
        )
        runtime.load_order_partitions(
            [tp.partition for tp in assigned if tp.topic == runtime.settings.orders_topic],
            state,
            list(tables.orders.items()),
        )
        runtime.load_customer_partitions(
            [tp.partition for tp in assigned if tp.topic == runtime.settings.customers_topic],
            state,
            list(tables.customers.items()),
        )
        runtime.indicators.load(
            any(tp.topic == runtime.settings.indicators_topic for tp in assigned),
            list(tables.indicators.items()),
        )
        runtime.owns_merge = any(
            tp.topic == runtime.settings.partials_topic for tp in app.assignor.assigned_actives()
        )
        runtime.load_merge_state(list(tables.window_merge.keys()))
        runtime.load_customer_counts(list(tables.window_merge.items()))
        await catch_up(assigned)
        runtime.resume_export()
        log.info("kpi-stream owns helpdesk partitions %s", sorted(actives))

    async def catch_up(assigned: Any) -> None:
        """Tell the runtime how far each rebuilt input partition has to read again
        before its newest known event time may close windows (runtime.catch_up)."""
        inputs = (runtime.settings.helpdesk_topic, runtime.settings.orders_topic)
        tps = sorted(tp for tp in assigned if tp.topic in inputs)
        if not tps:
            return
        consumer: Any = app.consumer
        try:
            ends = await consumer.highwaters(*tps)
            committed = await consumer.committed_offsets(*tps)
        except Exception as exc:  # the broker is away: the time is held, never too early
            log.warning("no end or committed offsets after the rebalance (%s)", exc)
            ends, committed = {}, {}
        for tp in tps:
            runtime.catch_up(tp.topic, tp.partition, committed.get(tp), ends.get(tp))

    def highwater(topic: str, partition: int) -> int | None:
        try:
            return app.consumer.highwater(TP(topic, partition))
        except Exception:  # the consumer is not up yet, or the partition just moved
            return None

    runtime.set_highwater_source(highwater)
    return {
        "helpdesk": helpdesk_events,
        "orders": order_events,
        "indicators": indicator_events,
        "customers": customer_activity,
        "merge": merge_windows,
    }
