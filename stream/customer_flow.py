"""The worker's customer path (O7, O8, H8): activities re-keyed by customer in, window
changes and table writes out, on the entity path of entity_flow.py.

Two kinds of messages arrive on the customer-activity topic:
- activities (`ticket`, `contact`, `order`), sent by the help-desk and order agents for
  every event that is one (repeats included: the customer side deduplicates them by
  the source event id, so an activity lost in a crash is sent again with its event),
  a JSON array of them per customer partition (stream/activity_batches.py; a single
  activity object is read too);
- marks: each tick, every input partition sends its event time and watermark to every
  customer partition. A customer partition's event time is the smallest of them, so
  its windows close only when both streams have passed them (docs/kpis.md,
  "Customers"); activity times never move it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.entity_flow import EntityFlow, Timer
from stream.export.metrics import PipelineMetrics
from stream.kpi import customers
from stream.settings import Settings
from stream.source_windows import SourceWindows

SUMMARY_PREFIX = "customers|"


class CustomerModel:
    def __init__(self, rules: customers.CustomerRules) -> None:
        self.rules = rules

    def new(self, key: str) -> customers.CustomerState:
        return customers.CustomerState(key)

    def load(self, stored: dict[str, Any]) -> customers.CustomerState:
        return customers.CustomerState.from_dict(stored)

    def store(self, state: customers.CustomerState) -> dict[str, Any]:
        return state.to_dict()

    def add(self, state: customers.CustomerState, item: dict[str, Any]) -> str | None:
        return customers.add_activity(state, item, self.rules)

    def derive(self, state: customers.CustomerState) -> customers.CustomerView:
        return customers.derive(state, self.rules)

    def empty_view(self) -> customers.CustomerView:
        return customers.CustomerView()

    def timers(self, view: customers.CustomerView) -> list[Timer]:
        return [(str(p.start_ms), p.end_ms) for p in view.timers]

    def expire(self, state: customers.CustomerState, timer_id: str) -> bool:
        start = int(timer_id)
        if start in state.expired:
            return False
        state.expired.append(start)
        return True

    def expires_at_ms(self, view: customers.CustomerView) -> int | None:
        return customers.expires_at_ms(view, self.rules)

    def live_done(self, state: customers.CustomerState) -> list[str]:
        return state.live


def activity(
    customer_id: str, event_id: str, at_ms: int, kind: str, complaint: bool = False
) -> bytes:
    """The value of one activity message (keyed by customer id)."""
    return orjson.dumps(
        {
            "customer_id": customer_id,
            "event_id": event_id,
            "t": at_ms,
            "kind": kind,
            "complaint": complaint,
        }
    )


def upstream_mark(source: str, event_ms: int, watermark: int) -> bytes:
    """The value of one input partition's marks for the customer partitions."""
    return orjson.dumps({"upstream": source, "event_ms": event_ms, "watermark": watermark})


@dataclass
class CustomerResult:
    state_writes: dict[str, Any] = field(default_factory=dict)
    malformed: str | None = None  # an internal message that is not one (a bug): why


class CustomerFlow(EntityFlow):
    def __init__(
        self,
        settings: Settings,
        pipeline: PipelineMetrics,
        count_live: Any,
    ) -> None:
        super().__init__(
            settings,
            CustomerModel(settings.customer_rules()),
            SourceWindows(settings, "customers", SUMMARY_PREFIX, settings.customer_window_sizes_ms),
            pipeline,
            settings.customers_topic,
            count_live,
        )
        # Per customer partition: each input partition's latest marks, and the earliest
        # activity seen before every input partition had reported (so that its window
        # is not taken as final when the marks first arrive).
        self.upstream: dict[int, dict[str, tuple[int, int]]] = {}
        self.earliest: dict[int, int] = {}
        self.expected_upstreams = 2 * settings.partitions

    # Activity times do not move a customer partition's time: the input partitions'
    # marks do (an activity may be far behind the other stream's time).
    items_move_time = False

    def process(
        self, raw: bytes, partition: int, table: MutableMapping[str, Any], now_ms: int
    ) -> CustomerResult:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return CustomerResult(malformed=f"{type(exc).__name__}: {exc}"[:300])
        if not isinstance(message, list):
            return self._one(message, partition, table, now_ms)
        # A batch of activities (stream/activity_batches.py), in the order they were
        # sent. One that is not an activity (a bug) leaves the others applied; the
        # message goes to the dead-letter topic saying which.
        out = CustomerResult()
        for number, item in enumerate(message):
            one = self._one(item, partition, table, now_ms)
            out.state_writes.update(one.state_writes)
            if one.malformed is not None and out.malformed is None:
                out.malformed = f"item {number}: {one.malformed}"[:300]
        return out

    def _one(
        self, message: Any, partition: int, table: MutableMapping[str, Any], now_ms: int
    ) -> CustomerResult:
        try:
            if "upstream" in message:
                return self._marks(message, partition, table, now_ms)
            customer_id = str(message.pop("customer_id", "") or "")
            at = int(message["t"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return CustomerResult(malformed=f"{type(exc).__name__}: {exc}"[:300])
        if len(self.upstream.get(partition, ())) < self.expected_upstreams:
            self.earliest[partition] = min(self.earliest.get(partition, at), at)
        # Repeats are expected here (every repeat of a source event is sent again): not
        # counted as duplicates of the input.
        result = self.apply_item(customer_id, message, at, partition, table, now_ms)
        return CustomerResult(state_writes=result.state_writes)

    def _marks(
        self,
        message: dict[str, Any],
        partition: int,
        table: MutableMapping[str, Any],
        now_ms: int,
    ) -> CustomerResult:
        marks = self.upstream.setdefault(partition, {})
        source = str(message["upstream"])
        old = marks.get(source, (-(2**62), -(2**62)))
        marks[source] = (
            max(old[0], int(message["event_ms"])),
            max(old[1], int(message["watermark"])),
        )
        kpis = self.windows.partition(partition)
        kpis.last_event_wall_ms = now_ms  # never idle: the marks follow the wall clock
        if len(marks) < self.expected_upstreams:
            return CustomerResult()
        event_ms = min(m[0] for m in marks.values())
        if kpis.final_through_ms is None:
            watermark = min(m[1] for m in marks.values())
            kpis.final_through_ms = min(watermark, self.earliest.pop(partition, watermark) - 1)
        if kpis.max_event_ms is None or event_ms > kpis.max_event_ms:
            kpis.max_event_ms = event_ms
        self.run_due(partition, table)
        out = CustomerResult()
        self.windows.add_summary_write(partition, out.state_writes)
        return out

    def load_customers(
        self,
        active: Any,
        state: Any,
        table: Any,
    ) -> None:
        entries = list(table)
        self.load(active, state, entries)
        # The persisted marks stand until every input partition has reported again.
        self.upstream = {p: {} for p in self.windows.partitions}
        # A partition with no persisted mark yet: nothing its customers' activities
        # imply (windows now, periods that end later) may be taken as final when the
        # marks first arrive.
        self.earliest = {}
        for _, stored in entries:
            number = stored.get("_partition") if isinstance(stored, dict) else None
            if not isinstance(number, int):
                continue
            kpis = self.windows.partitions.get(number)
            if kpis is None or kpis.final_through_ms is not None:
                continue
            for activity in stored.get("activities", ()):
                at = int(activity[0])
                self.earliest[number] = min(self.earliest.get(number, at), at)
