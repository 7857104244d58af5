"""The agents: decode, call the core, assign to tables, send. Nothing else lives here."""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson
from faust.types import TP

from stream.kpi.merge import StagedState
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

    def record_position(message: Any) -> None:
        """Where a consumer is, for the lag metrics."""
        runtime.record_position(
            message.topic,
            message.partition,
            message.offset,
            int(message.timestamp * 1000) if message.timestamp else None,
        )

    async def dead_letter(event: Any, reason: str, detail: str) -> None:
        """The raw message to the dead-letter topic, with why and where it came from."""
        message = event.message
        await topics.dlq.send(
            key=message.key,
            value=event.value if event.value is not None else b"",
            headers=dlq_headers(reason, detail, message.topic, message.partition, message.offset),
        )

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
            for customer, value in result.activities:
                await topics.customers.send(key=customer.encode(), value=value)

    @app.agent(topics.orders, name="order-events")
    async def order_events(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            record_position(message)
            result = runtime.process_order(event.value, message.partition, tables.orders)
            for customer, value in result.activities:
                await topics.customers.send(key=customer.encode(), value=value)
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
            if result.malformed is not None:
                await dead_letter(event, "internal_message", result.malformed)
                continue
            for key, value in result.state_writes.items():
                tables.kpi_state[key] = value

    @app.timer(1.0, name="tick")
    async def tick() -> None:
        messages = runtime.tick(
            tickets=tables.tickets, orders=tables.orders, customers=tables.customers
        )
        sent = [await topics.partials.send(value=orjson.dumps(m)) for m in messages]
        # The input partitions' time, for the customer partitions (customer_flow.py).
        sent += [
            await topics.customers.send(value=value, partition=part)
            for part, value in runtime.upstream_marks()
        ]
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
            # writes wait until Kafka has the KPI messages they account for.
            staged = StagedState(tables.window_merge)
            sent = []
            for key, kpi_message in runtime.merge_step(orjson.loads(event.value), staged):
                body = None if kpi_message is None else orjson.dumps(kpi_message)
                sent.append(await topics.kpi.send(key=key.encode(), value=body))
            for pending in sent:
                await pending
            staged.commit()

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
        log.info("kpi-stream owns helpdesk partitions %s", sorted(actives))

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
