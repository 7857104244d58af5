"""The worker's order path: one orders.events message in, window changes and table writes
out (the entity path of entity_flow.py, with an order as the entity).

An order is the set of its events (stream/kpi/orders.py); its timers are O2's minute
and O4's 15 minutes, whose misses are recorded in the order when the watermark passes
them. The windows that are not final are rebuilt from the orders table on a restart.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from stream.codec import ORDER_TYPES, Decoder, Rejection
from stream.customer_flow import activity
from stream.entity_flow import EntityFlow, Timer
from stream.export.metrics import PipelineMetrics
from stream.export.order_metrics import OrderMetrics
from stream.kpi import orders
from stream.kpi.events import Event
from stream.settings import Settings
from stream.source_windows import SourceWindows

SUMMARY_PREFIX = "orders|"  # kpi_state keys of the order partitions' marks


class OrderModel:
    """An order as entity_flow.py sees it."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms

    def new(self, key: str) -> orders.OrderState:
        return orders.OrderState(key)

    def load(self, stored: dict[str, Any]) -> orders.OrderState:
        return orders.OrderState.from_dict(stored)

    def store(self, state: orders.OrderState) -> dict[str, Any]:
        return state.to_dict()

    def add(self, state: orders.OrderState, item: Event) -> str | None:
        return orders.add_event(state, item)

    def derive(self, state: orders.OrderState) -> orders.OrderView:
        return orders.derive(state)

    def empty_view(self) -> orders.OrderView:
        return orders.OrderView()

    def timers(self, view: orders.OrderView) -> list[Timer]:
        return [(t.name, t.deadline_ms) for t in view.timers]

    def expire(self, state: orders.OrderState, timer_id: str) -> bool:
        if timer_id in state.expired:
            return False
        state.expired.append(timer_id)
        return True

    def expires_at_ms(self, view: orders.OrderView) -> int | None:
        return orders.expires_at_ms(view, self.retention_ms)

    def live_done(self, state: orders.OrderState) -> list[str]:
        return state.live


@dataclass
class OrderResult:
    event: Event | None = None
    rejection: Rejection | None = None
    duplicate: bool = False
    state_writes: dict[str, Any] = field(default_factory=dict)  # kpi_state key -> value
    # (customer id, value) for the customer-activity topic, repeats included.
    activities: list[tuple[str, bytes]] = field(default_factory=list)


class OrderFlow(EntityFlow):
    def __init__(self, settings: Settings, pipeline: PipelineMetrics, metrics: OrderMetrics):
        super().__init__(
            settings,
            OrderModel(settings.order_retention_ms),
            SourceWindows(settings, "orders", SUMMARY_PREFIX),
            pipeline,
            settings.orders_topic,
            metrics.count,
        )
        self.decoder = Decoder(
            ORDER_TYPES,
            max_message_bytes=settings.max_message_bytes,
            max_future_ms=settings.max_future_ms,
        )

    def process(
        self, raw: bytes | None, partition: int, table: MutableMapping[str, Any], now_ms: int
    ) -> OrderResult:
        """Decode, dedupe and apply one orders.events message."""
        decoded = self.decoder.decode(raw, now_ms)
        if isinstance(decoded, Rejection):
            self.pipeline.rejected.labels(self.topic, decoded.reason.value).inc()
            return OrderResult(rejection=decoded)
        event = decoded
        activities = []
        kind = {"order.placed": "order", "customer.contacted": "contact"}.get(event.type)
        if kind is not None and event.body.get("customer_id"):
            customer = str(event.body["customer_id"])
            value = activity(customer, event.event_id, event.occurred_at_ms, kind)
            activities.append((customer, value))
        order_id = str(event.body["order_id"])
        applied = self.apply_item(order_id, event, event.occurred_at_ms, partition, table, now_ms)
        if applied.duplicate:
            self.pipeline.child(self.pipeline.duplicates, self.topic).inc()
        elif applied.dropped:
            self.pipeline.dropped.labels(self.topic, "order_history_full").inc()
        else:
            self.pipeline.child(self.pipeline.events, self.topic, event.type).inc()
        return OrderResult(
            event=event,
            duplicate=applied.duplicate,
            state_writes=applied.state_writes,
            activities=activities,
        )
