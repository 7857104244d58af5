"""The worker's path for keyed entities whose KPIs are a function of a set of items:
orders (order_flow.py) and customers (customer_flow.py).

For one item (an order event, a customer activity): load the entity's state from its
table, insert the item (duplicates by id refused), derive the entity again, apply the
change of its contributions to the partition's windows, store the state; run the timers
the watermark passed (a target missed, a period over); drop states whose retention
passed in event time. On a restart or a rebalance the windows that are not final are
rebuilt from the table. The entity's own rules live in a `Model`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.export.metrics import PipelineMetrics
from stream.kpi.contrib import Contribution, diff
from stream.kpi.partition import PartitionKpis
from stream.settings import Settings
from stream.source_windows import SourceWindows

PRUNE_PER_ITEM = 50

Timer = tuple[str, int]  # (timer id within its entity, deadline in epoch ms)


class View(Protocol):
    contributions: list[Contribution]
    newest_ms: int | None


class Model(Protocol):
    """What an entity is: its state, how an item joins it, what it implies."""

    def new(self, key: str) -> Any: ...
    def load(self, stored: dict[str, Any]) -> Any: ...
    def store(self, state: Any) -> dict[str, Any]: ...
    def add(self, state: Any, item: Any) -> str | None: ...  # 'duplicate', 'full' or None
    def derive(self, state: Any) -> Any: ...  # a View
    def empty_view(self) -> Any: ...
    def timers(self, view: Any) -> list[Timer]: ...
    def expire(self, state: Any, timer_id: str) -> bool: ...  # False: already expired
    def expires_at_ms(self, view: Any) -> int | None: ...
    def live_done(self, state: Any) -> list[str]: ...  # idents counted live already


@dataclass
class TimerIndex:
    """Running timers of one partition's entities: a heap of deadlines, and which timers
    each entity has running now (a timer that stopped is skipped when it comes due)."""

    running: dict[str, set[Timer]] = field(default_factory=dict)
    heap: list[tuple[int, str, str]] = field(default_factory=list)

    def update(self, key: str, timers: list[Timer]) -> None:
        now = set(timers)
        for timer_id, deadline in now - self.running.get(key, set()):
            heapq.heappush(self.heap, (deadline, key, timer_id))
        if now:
            self.running[key] = now
        else:
            self.running.pop(key, None)

    def due(self, now_ms: int) -> list[tuple[str, str]]:
        out = []
        while self.heap and self.heap[0][0] <= now_ms:
            deadline, key, timer_id = heapq.heappop(self.heap)
            if (timer_id, deadline) in self.running.get(key, ()):
                out.append((key, timer_id))
        return out


@dataclass
class ItemResult:
    duplicate: bool = False
    dropped: bool = False  # refused: the entity's history is full
    state_writes: dict[str, Any] = field(default_factory=dict)  # kpi_state key -> value


class EntityFlow:
    # An item's time moves its partition's event time (customers: the marks do).
    items_move_time = True

    def __init__(
        self,
        settings: Settings,
        model: Model,
        windows: SourceWindows,
        pipeline: PipelineMetrics,
        topic: str,
        count_live: Callable[[list[Contribution]], None],
    ) -> None:
        self.settings = settings
        self.model = model
        self.windows = windows
        self.pipeline = pipeline
        self.topic = topic
        self.count_live = count_live
        self.timers: dict[int, TimerIndex] = {}
        self.expiry: dict[int, list[tuple[int, str]]] = {}
        # Timers run out by the wall clock in a tick (live mode), where no table can be
        # written: recorded in the entity at the partition's next item.
        self.pending_expired: dict[int, set[tuple[str, str]]] = {}

    @property
    def partitions(self) -> dict[int, PartitionKpis]:
        return self.windows.partitions

    # --- one item -----------------------------------------------------------------------
    def apply_item(
        self,
        key: str,
        item: Any,
        at_ms: int,
        partition: int,
        table: MutableMapping[str, Any],
        now_ms: int,
    ) -> ItemResult:
        result = ItemResult()
        self._flag_pending(partition, table)
        kpis = self.windows.partition(partition)
        stored = table.get(key)
        state = self.model.load(stored) if stored is not None else self.model.new(key)
        before = self.model.derive(state) if stored is not None else self.model.empty_view()
        refused = self.model.add(state, item)
        # A duplicate too: after a rebuild, the re-read items move the time on.
        self.observe(kpis, at_ms, now_ms)
        if refused == "duplicate":
            result.duplicate = True
            self.windows.add_summary_write(partition, result.state_writes)
            return result
        if refused == "full":
            result.dropped = True
        else:
            self._apply(partition, key, state, before, self.model.derive(state), table)
        self.run_due(partition, table)
        self.windows.add_summary_write(partition, result.state_writes)
        self._prune(partition, table)
        return result

    def observe(self, kpis: PartitionKpis, at_ms: int, now_ms: int) -> None:
        if self.items_move_time:
            kpis.observe(at_ms, now_ms)

    def run_due(self, partition: int, table: MutableMapping[str, Any]) -> None:
        """Expire the timers the partition's event watermark has passed (inside stream
        iteration: the expiries are written to the table)."""
        watermark = self.windows.partition(partition).event_watermark_ms()
        if watermark is None:
            return
        for key, timer_id in self.timers.setdefault(partition, TimerIndex()).due(watermark):
            self._expire(partition, key, timer_id, table, write=True)

    def _apply(
        self,
        partition: int,
        key: str,
        state: Any,
        before: Any,
        after: Any,
        table: MutableMapping[str, Any] | None,
    ) -> None:
        kpis = self.windows.partition(partition)
        if kpis.apply(diff(before.contributions, after.contributions)):
            for family, n in kpis.late.items():
                self.pipeline.late.labels(self.topic, family).inc(n)
            kpis.late.clear()
        done = self.model.live_done(state)
        seen = set(done)
        fresh = [c for c in after.contributions if c.ident not in seen]
        if fresh:
            self.count_live(fresh)
            done.extend(sorted({c.ident for c in fresh}))
        self.timers.setdefault(partition, TimerIndex()).update(key, self.model.timers(after))
        if table is not None:
            table[key] = {**self.model.store(state), "_partition": partition}
            expires = self.model.expires_at_ms(after)
            if expires is not None:
                heapq.heappush(self.expiry.setdefault(partition, []), (expires, key))

    # --- timers -------------------------------------------------------------------------
    def _expire(
        self, partition: int, key: str, timer_id: str, table: MutableMapping[str, Any], write: bool
    ) -> None:
        stored = table.get(key)
        if stored is None:
            return
        state = self.model.load(stored)
        before = self.model.derive(state)
        if not self.model.expire(state, timer_id):
            return
        after = self.model.derive(state)
        self._apply(partition, key, state, before, after, table if write else None)
        if not write:
            self.pending_expired.setdefault(partition, set()).add((key, timer_id))

    def _flag_pending(self, partition: int, table: MutableMapping[str, Any]) -> None:
        """Write the expiries a tick recorded into their entities (effects applied)."""
        for key, timer_id in self.pending_expired.pop(partition, set()):
            stored = table.get(key)
            if stored is None:
                continue
            state = self.model.load(stored)
            self.model.expire(state, timer_id)
            done = self.model.live_done(state)
            for ident in {c.ident for c in self.model.derive(state).contributions}:
                if ident not in done:
                    done.append(ident)
            table[key] = {**self.model.store(state), "_partition": partition}

    def expire_timers(self, wall: int, table: MutableMapping[str, Any] | None) -> None:
        """Timers that ran out with no item to stop them (in live mode, by the clock)."""
        if table is None:
            return
        for number, index in self.timers.items():
            kpis = self.windows.partitions.get(number)
            now = kpis.watermark_ms(wall if self.settings.live else None) if kpis else None
            if now is None:
                continue
            for key, timer_id in index.due(now):
                self._expire(number, key, timer_id, table, write=False)

    def _prune(self, partition: int, table: MutableMapping[str, Any]) -> None:
        heap = self.expiry.get(partition)
        watermark = self.windows.partition(partition).event_watermark_ms()
        if not heap or watermark is None:
            return
        for _ in range(PRUNE_PER_ITEM):
            if not heap or heap[0][0] > watermark:
                return
            _, key = heapq.heappop(heap)
            stored = table.get(key)
            if stored is None:
                continue
            expires = self.model.expires_at_ms(self.model.derive(self.model.load(stored)))
            if expires is not None and expires <= watermark:
                del table[key]
                self.timers.get(partition, TimerIndex()).update(key, [])

    # --- time ---------------------------------------------------------------------------
    def tick(self, wall: int, table: MutableMapping[str, Any] | None) -> list[dict[str, Any]]:
        self.expire_timers(wall, table)
        return self.windows.close(wall)

    def delivered(self) -> None:
        self.windows.delivered()

    # --- restart and rebalance ----------------------------------------------------------
    def load(
        self,
        active: Iterable[int],
        state: Iterable[tuple[str, Any]],
        table: Iterable[tuple[str, Any]],
    ) -> None:
        """Rebuild the partitions owned here from the entities' table."""
        wanted = set(active)
        rebuilt = self.windows.fresh(wanted, state)
        contributions: dict[int, list[Contribution]] = {p: [] for p in wanted}
        self.timers = {p: TimerIndex() for p in wanted}
        self.expiry = {p: [] for p in wanted}
        for key, stored in table:
            number = stored.get("_partition") if isinstance(stored, dict) else None
            if number not in wanted:
                continue
            view = self.model.derive(self.model.load(stored))
            contributions[number] += view.contributions
            kpis = rebuilt[number]
            newest = view.newest_ms
            if self.items_move_time and newest is not None:
                # The marks are persisted once a tick; the entities know the newest time.
                kpis.max_event_ms = max(kpis.max_event_ms or newest, newest)
            self.timers[number].update(key, self.model.timers(view))
            expires = self.model.expires_at_ms(view)
            if expires is not None:
                self.expiry[number].append((expires, key))
        for number, kpis in rebuilt.items():
            # The marks move on with the items (or, for customers, the marks) read again.
            kpis.hold_event_time()
            kpis.rebuild(contributions[number])
        for heap in self.expiry.values():
            heapq.heapify(heap)
        self.windows.install(rebuilt)
        self.pending_expired = {p: e for p, e in self.pending_expired.items() if p in wanted}
