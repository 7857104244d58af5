"""The worker's order path: one orders.events message in, window changes and table writes
out; the timers of O2 and O4; and the rebuild of the order windows after a restart.

The counterpart of the help-desk path in runtime.py, built the same way (see there):
an order is the set of its events (stream/kpi/orders.py), each event applies the change
of the order's contributions to the partition's windows, and the windows that are not
final are rebuilt from the orders table on a restart or a rebalance.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from stream.codec import ORDER_TYPES, Decoder, Rejection
from stream.export.metrics import PipelineMetrics
from stream.export.order_metrics import OrderMetrics
from stream.kpi.contrib import Contribution, diff
from stream.kpi.events import Event
from stream.kpi.orders import OrderState, OrderView, add_event, derive, expires_at_ms
from stream.kpi.partition import PartitionKpis
from stream.settings import Settings
from stream.source_windows import SourceWindows

PRUNE_PER_EVENT = 50
SUMMARY_PREFIX = "orders|"  # kpi_state keys of the order partitions' marks


@dataclass
class OrderResult:
    event: Event | None = None
    rejection: Rejection | None = None
    duplicate: bool = False
    state_writes: dict[str, Any] = field(default_factory=dict)  # kpi_state key -> value


@dataclass
class TimerIndex:
    """Running timers of one partition's orders: a heap of deadlines, and which timers
    each order has running now (a timer that stopped is skipped when it comes due)."""

    running: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    heap: list[tuple[int, str, str]] = field(default_factory=list)

    def update(self, order_id: str, view: OrderView) -> None:
        now = {(t.name, t.deadline_ms) for t in view.timers}
        before = self.running.get(order_id, set())
        for name, deadline in now - before:
            heapq.heappush(self.heap, (deadline, order_id, name))
        if now:
            self.running[order_id] = now
        else:
            self.running.pop(order_id, None)

    def due(self, now_ms: int) -> list[tuple[str, str]]:
        out = []
        while self.heap and self.heap[0][0] <= now_ms:
            deadline, order_id, name = heapq.heappop(self.heap)
            if (name, deadline) in self.running.get(order_id, ()):
                out.append((order_id, name))
        return out


class OrderFlow:
    def __init__(self, settings: Settings, pipeline: PipelineMetrics, metrics: OrderMetrics):
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.decoder = Decoder(ORDER_TYPES, max_message_bytes=settings.max_message_bytes)
        self.windows = SourceWindows(settings, "orders", SUMMARY_PREFIX)
        self.timers: dict[int, TimerIndex] = {}
        self.expiry: dict[int, list[tuple[int, str]]] = {}
        # Timers run out by the wall clock in a tick (live mode), where no table can be
        # written: recorded in the order at the partition's next event.
        self.pending_expired: dict[int, set[tuple[str, str]]] = {}

    @property
    def partitions(self) -> dict[int, PartitionKpis]:
        return self.windows.partitions

    # --- one message ------------------------------------------------------------------
    def process(
        self,
        raw: bytes | None,
        partition: int,
        orders: MutableMapping[str, Any],
        now_ms: int,
    ) -> OrderResult:
        topic = self.settings.orders_topic
        decoded = self.decoder.decode(raw)
        if isinstance(decoded, Rejection):
            self.pipeline.rejected.labels(topic, decoded.reason.value).inc()
            return OrderResult(rejection=decoded)
        event = decoded
        result = OrderResult(event=event)
        self._flag_pending(partition, orders)
        kpis = self.windows.partition(partition)
        order_id = str(event.body["order_id"])
        stored = orders.get(order_id)
        state = OrderState.from_dict(stored) if stored is not None else OrderState(order_id)
        before = derive(state) if stored is not None else OrderView()
        refused = add_event(state, event)
        if refused == "duplicate":
            self.pipeline.duplicates.labels(topic).inc()
            result.duplicate = True
            return result
        kpis.observe(event.occurred_at_ms, now_ms)
        if refused == "full":
            self.pipeline.dropped.labels(topic, "order_history_full").inc()
        else:
            self.pipeline.events.labels(topic, event.type).inc()
            self._apply(partition, state, before, derive(state), orders)
        watermark = kpis.event_watermark_ms()
        if watermark is not None:
            for due_id, name in self.timers.setdefault(partition, TimerIndex()).due(watermark):
                self._expire(partition, due_id, name, orders, write=True)
        summary = self.windows.summary_write(partition)
        if summary is not None:
            result.state_writes[summary[0]] = summary[1]
        self._prune(partition, orders)
        return result

    def _apply(
        self,
        partition: int,
        state: OrderState,
        before: OrderView,
        after: OrderView,
        orders: MutableMapping[str, Any] | None,
    ) -> None:
        kpis = self.windows.partition(partition)
        late = kpis.apply(diff(before.contributions, after.contributions))
        if late:
            for family, n in kpis.late.items():
                self.pipeline.late.labels(self.settings.orders_topic, family).inc(n)
            kpis.late.clear()
        self._count_live(state, after.contributions)
        self.timers.setdefault(partition, TimerIndex()).update(state.order_id, after)
        if orders is not None:
            stored = state.to_dict()
            stored["_partition"] = partition
            orders[state.order_id] = stored
            expires = expires_at_ms(after, self.settings.order_retention_ms)
            if expires is not None:
                heapq.heappush(self.expiry.setdefault(partition, []), (expires, state.order_id))

    def _count_live(self, state: OrderState, contributions: list[Contribution]) -> None:
        done = set(state.live)
        fresh = [c for c in contributions if c.ident not in done]
        if fresh:
            self.metrics.count(fresh)
            state.live.extend(sorted({c.ident for c in fresh}))

    # --- timers -----------------------------------------------------------------------
    def _expire(
        self,
        partition: int,
        order_id: str,
        name: str,
        orders: MutableMapping[str, Any],
        write: bool,
    ) -> None:
        """A timer the watermark passed: its target is missed, for good."""
        stored = orders.get(order_id)
        if stored is None:
            return
        state = OrderState.from_dict(stored)
        if name in state.expired:
            return
        before = derive(state)
        state.expired.append(name)
        after = derive(state)
        if write:
            self._apply(partition, state, before, after, orders)
        else:
            self._apply(partition, state, before, after, None)
            self.pending_expired.setdefault(partition, set()).add((order_id, name))

    def _flag_pending(self, partition: int, orders: MutableMapping[str, Any]) -> None:
        """Write the misses a tick recorded into their orders (effects already applied)."""
        for order_id, name in self.pending_expired.pop(partition, set()):
            stored = orders.get(order_id)
            if stored is None:
                continue
            state = OrderState.from_dict(stored)
            if name not in state.expired:
                state.expired.append(name)
            for ident in (c.ident for c in derive(state).contributions):
                if ident not in state.live:
                    state.live.append(ident)
            orders[order_id] = {**state.to_dict(), "_partition": partition}

    def expire_timers(self, wall: int, orders: MutableMapping[str, Any] | None) -> None:
        """Timers that ran out with no event to stop them (in live mode, by the clock)."""
        if orders is None:
            return
        for number, index in self.timers.items():
            kpis = self.windows.partitions.get(number)
            now = kpis.watermark_ms(wall if self.settings.live else None) if kpis else None
            if now is None:
                continue
            for order_id, name in index.due(now):
                self._expire(number, order_id, name, orders, write=False)

    def _prune(self, partition: int, orders: MutableMapping[str, Any]) -> None:
        heap = self.expiry.get(partition)
        watermark = self.windows.partition(partition).event_watermark_ms()
        if not heap or watermark is None:
            return
        for _ in range(PRUNE_PER_EVENT):
            if not heap or heap[0][0] > watermark:
                return
            _, order_id = heapq.heappop(heap)
            stored = orders.get(order_id)
            if stored is None:
                continue
            view = derive(OrderState.from_dict(stored))
            expires = expires_at_ms(view, self.settings.order_retention_ms)
            if expires is not None and expires <= watermark:
                del orders[order_id]
                self.timers.get(partition, TimerIndex()).update(order_id, OrderView())

    # --- time -------------------------------------------------------------------------
    def tick(self, wall: int, orders: MutableMapping[str, Any] | None) -> list[dict[str, Any]]:
        self.expire_timers(wall, orders)
        return self.windows.close(wall)

    def delivered(self) -> None:
        self.windows.delivered()

    # --- restart and rebalance --------------------------------------------------------
    def load(
        self,
        active: Iterable[int],
        state: Iterable[tuple[str, Any]],
        orders: Iterable[tuple[str, Any]],
    ) -> None:
        """Rebuild the order partitions owned here from the orders table."""
        wanted = set(active)
        rebuilt = self.windows.fresh(wanted, state)
        contributions: dict[int, list[Contribution]] = {p: [] for p in wanted}
        self.timers = {p: TimerIndex() for p in wanted}
        self.expiry = {p: [] for p in wanted}
        for order_id, stored in orders:
            number = stored.get("_partition") if stored is not None else None
            if number not in wanted:
                continue
            view = derive(OrderState.from_dict(stored))
            contributions[number] += view.contributions
            kpis = rebuilt[number]
            if view.newest_ms is not None and (kpis.max_event_ms or -(2**62)) < view.newest_ms:
                kpis.max_event_ms = view.newest_ms
            self.timers[number].update(order_id, view)
            expires = expires_at_ms(view, self.settings.order_retention_ms)
            if expires is not None:
                self.expiry[number].append((expires, order_id))
        for number, kpis in rebuilt.items():
            kpis.rebuild(contributions[number])
        for heap in self.expiry.values():
            heapq.heapify(heap)
        self.windows.install(rebuilt)
        self.pending_expired = {p: e for p, e in self.pending_expired.items() if p in wanted}
