"""The worker's in-process state and the steps an agent takes for one message.

Kept apart from the Faust wiring so that the whole path (decode, dedupe, ticket
derivation, windows, merge, metrics) runs in tests with plain dicts standing in for
tables. Tables are passed in as mutable mappings; the agent hands in Faust tables, tests
hand in dicts. Table writes happen only inside `process_helpdesk` and `merge_step`,
which the agents call from inside stream iteration (where Faust sends the changelog
record to the partition of the message being processed).
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry

from stream.codec import HELPDESK_TYPES, Decoder, Rejection
from stream.customer_flow import CustomerFlow, CustomerResult, activity, upstream_mark
from stream.export.customer_metrics import ComplaintGrowthCollector, CustomerMetrics
from stream.export.indicator_metrics import IndicatorCollector
from stream.export.metrics import KpiCollector, PartitionProgress, PipelineMetrics
from stream.export.order_metrics import OrderMetrics
from stream.indicator_flow import IndicatorFlow, IndicatorResult
from stream.kpi.contrib import Contribution, diff, session_contributions
from stream.kpi.customer_catalogue import (
    carried_customer_values,
    customer_window_values,
    fill_customer_change,
)
from stream.kpi.events import Event
from stream.kpi.labels import OTHER, BoundedLabels
from stream.kpi.merge import PrefixedState, WindowMerger
from stream.kpi.order_catalogue import order_window_values
from stream.kpi.partition import PartitionKpis
from stream.kpi.shifts import agent_pieces, apply_shift, on_intervals
from stream.kpi.sla import SlaIndex
from stream.kpi.snapshot import KpiSnapshot, build_snapshot
from stream.kpi.tickets import (
    TicketState,
    TicketView,
    add_event,
    derive,
    expires_at_ms,
)
from stream.kpi.timefmt import format_rfc3339_ms
from stream.order_flow import OrderFlow, OrderResult
from stream.settings import Settings
from stream.source_windows import SourceWindows

log = logging.getLogger(__name__)

# The order merger's keys in the merge table (beside the help-desk merger's).
ORDER_MERGE_PREFIX = "o:"
CUSTOMER_MERGE_PREFIX = "c:"

# Expired ticket states dropped per event at most: pruning keeps pace with the stream
# without a pause after a long idle period.
PRUNE_PER_EVENT = 50

# Events with no ticket (agent shifts, anonymous self-service) are deduplicated within a
# scope (the agent or the customer), remembering this many recent ids per scope.
SCOPE_DEDUPE_IDS = 1000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Position:
    """The last record processed on a partition, for lag."""

    offset: int = -1
    timestamp_ms: int | None = None


@dataclass
class HelpdeskResult:
    """What processing one message of helpdesk.events produced."""

    event: Event | None = None
    rejection: Rejection | None = None
    duplicate: bool = False
    state_writes: dict[str, Any] = field(default_factory=dict)  # kpi_state key -> value/None
    # (customer id, value) for the customer-activity topic: sent for repeats too, the
    # customer side deduplicates (a crash may have lost the first send).
    activities: list[tuple[str, bytes]] = field(default_factory=list)


class WorkerRuntime:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.helpdesk_decoder = Decoder(
            HELPDESK_TYPES,
            max_message_bytes=settings.max_message_bytes,
            max_future_ms=settings.max_future_ms,
        )
        self.queue_labels = BoundedLabels(settings.queues, settings.max_queues)
        # ISO 4217 codes pass the schema, but only a handful are in use: bound them too.
        self.currency_labels = BoundedLabels((), 20)
        self.helpdesk = SourceWindows(settings, "")
        self.positions: dict[tuple[str, int], Position] = {}
        self.sla_policy = settings.sla_policy()
        self.sla: dict[int, SlaIndex] = {}
        # Breaches recorded by the clock alone (a tick, outside stream iteration, where no
        # table can be written): flagged in the ticket's state by the partition's next
        # event. Their contributions are already in the windows.
        self.pending_breaches: dict[int, set[tuple[str, str]]] = {}
        # Per partition: a heap of (expires_at_ms, ticket_id) of tickets that may be dropped.
        self.expiry: dict[int, list[tuple[int, str]]] = {}
        self.on_shift: dict[int, int] = {}  # agents on shift, by partition
        # H12 per window: each agent's on-shift intervals, by partition, and how far in
        # event time their time on shift has been put into the windows.
        self.shifts: dict[int, dict[str, list[tuple[int, int | None]]]] = {}
        self.shift_horizon: dict[int, int] = {}
        self._step_ms = math.gcd(*settings.window_sizes_ms)
        self.merger = WindowMerger(settings.partitions, format_rfc3339_ms)
        self.indicators = IndicatorFlow(settings, self.metrics)
        self.registry.register(
            IndicatorCollector(self.indicators.snapshot, self.metrics.label_overflow)
        )
        self.customer_metrics = CustomerMetrics(self.registry)
        self.customers = CustomerFlow(settings, self.metrics, self.customer_metrics.count)
        rules = settings.customer_rules()
        self.customer_merger = WindowMerger(
            settings.partitions,
            format_rfc3339_ms,
            values=lambda merged, size, start: customer_window_values(
                merged, size, rules.retention_window_ms, start + size, self.customer_count_at
            ),
            carry=carried_customer_values,
            change=fill_customer_change,
        )
        # The external customer_count indicator, by (period start, end): H8's customer
        # base where reported (kept in the merge table, loaded with it).
        self.customer_counts: dict[tuple[int, int], float] = {}
        # H8 of the newest final window of each size, for the gauges (merge worker only).
        self.latest_growth: dict[str, dict[str, Any]] = {}
        self.registry.register(ComplaintGrowthCollector(lambda: self.latest_growth))
        self.order_metrics = OrderMetrics(self.registry)
        self.orders = OrderFlow(settings, self.metrics, self.order_metrics)
        self.order_merger = WindowMerger(
            settings.partitions,
            format_rfc3339_ms,
            values=lambda merged, _size, _start: order_window_values(merged),
        )
        self.registry.register(KpiCollector(self.snapshot, self.progress))
        self._highwater: Any = None
        self._newest_event_ms: dict[str, int] = {}
        # (input topic, partition) -> the log end offset when it was assigned: its event
        # time is held (PartitionKpis.hold_event_time) until it has read up to there.
        self._catch_up: dict[tuple[str, int], int] = {}
        self.owns_merge = False  # the window-partials partition is assigned here
        # False from a revocation until the rebalance completes: the partitions may be
        # another worker's by then, so their gauges are not shown (a sum over the
        # workers would count them twice).
        self.exporting = True

    # --- partitions -------------------------------------------------------------
    @property
    def partitions(self) -> dict[int, PartitionKpis]:
        """The help-desk partitions owned here."""
        return self.helpdesk.partitions

    def partition(self, number: int) -> PartitionKpis:
        return self.helpdesk.partition(number)

    def _derive(self, state: TicketState) -> TicketView:
        return derive(state, self.sla_policy, self.queue_labels.label)

    def load_partitions(
        self,
        active: Iterable[int],
        state: Iterable[tuple[str, Any]],
        tickets: Iterable[tuple[str, Any]] = (),
        scopes: Iterable[tuple[str, Any]] = (),
    ) -> None:
        """Rebuild the in-memory state of the active partitions from the tables.

        Called when a rebalance completes (after changelog recovery). The windows that
        are not final are a function of the tickets, so they are derived again; the
        gauges are right from the first scrape, before the next event arrives.
        """
        wanted = set(active)
        rebuilt = self.helpdesk.fresh(wanted, state)
        contributions: dict[int, list[Contribution]] = defaultdict(list)
        self.sla = {p: SlaIndex() for p in wanted}
        self.expiry = {p: [] for p in wanted}
        for kpis in rebuilt.values():
            kpis.active.clear()
        retention = self.settings.ticket_retention_ms
        for ticket_id, stored in tickets:
            number = stored.get("_partition") if stored is not None else None
            if number not in wanted:
                continue
            view = self._derive(TicketState.from_dict(stored))
            contributions[number] += view.contributions
            kpis = rebuilt[number]
            if view.newest_ms is not None and (kpis.max_event_ms or -(2**62)) < view.newest_ms:
                # The marks are persisted once a tick; the tickets know the newest time.
                kpis.max_event_ms = view.newest_ms
            self.sla[number].update(ticket_id, view.clocks)
            if view.active_key is not None:
                rebuilt[number].active[view.active_key] += 1
            expires = expires_at_ms(view, retention)
            if expires is not None:
                self.expiry[number].append((expires, ticket_id))
        self.on_shift = {p: 0 for p in wanted}
        self.shifts = {p: {} for p in wanted}
        for key, record in scopes:
            number = record.get("_partition") if isinstance(record, dict) else None
            if number not in wanted:
                continue
            if key.startswith("shift:"):
                self.on_shift[number] += record.get("state") == "on"
                self.shifts[number][key] = on_intervals(record.get("events", []))
            for i, (t, screens, clicks, ok) in enumerate(record.get("sessions", ())):
                contributions[number] += session_contributions(t, screens, clicks, ok, f"s{i}")
        self.shift_horizon = {}
        for number, kpis in rebuilt.items():
            # Time on shift up to the newest time the tables know (a shift event read
            # again corrects it), and at least up to where the final windows end (the
            # marks were persisted from a time read again may be behind them); the tick
            # goes on from there.
            horizon = kpis.max_event_ms
            if horizon is not None and kpis.final_through_ms is not None:
                horizon = max(horizon, kpis.final_through_ms + kpis.grace_ms)
            low = self._shift_low(kpis)
            if horizon is not None and low is not None:
                self.shift_horizon[number] = horizon
                for intervals in self.shifts[number].values():
                    contributions[number] += agent_pieces(intervals, low, horizon, self._step_ms)
            kpis.rebuild(contributions.get(number, ()))
            kpis.hold_event_time()
            log.info(
                "rebuilt partition %d: final through %s, newest event %s, %d open windows",
                number,
                kpis.final_through_ms,
                kpis.max_event_ms,
                len(kpis.windows),
            )
        for heap in self.expiry.values():
            heapq.heapify(heap)
        self.helpdesk.install(rebuilt)
        self.pending_breaches = {p: b for p, b in self.pending_breaches.items() if p in wanted}
        self._drop_catch_up(self.settings.helpdesk_topic)

    # --- one message -----------------------------------------------------------
    def process_helpdesk(
        self,
        raw: bytes | None,
        partition: int,
        tickets: MutableMapping[str, Any],
        scopes: MutableMapping[str, Any],
        now_ms: int | None = None,
    ) -> HelpdeskResult:
        """Decode, dedupe and apply one helpdesk.events message; update metrics.

        Returns the table writes for kpi_state (the caller assigns them, so the
        changelog record goes to this message's partition).
        """
        topic = self.settings.helpdesk_topic
        now_ms = wall_ms() if now_ms is None else now_ms
        decoded = self.helpdesk_decoder.decode(raw, now_ms)
        if isinstance(decoded, Rejection):
            self.metrics.rejected.labels(topic, decoded.reason.value).inc()
            return HelpdeskResult(rejection=decoded)
        event = decoded
        result = HelpdeskResult(event=event)
        self._flag_breaches(partition, tickets)
        ticket_id = event.body.get("ticket_id")
        kpis = self.partition(partition)
        if ticket_id is None:
            result.duplicate = self._apply_scoped_event(event, partition, scopes, now_ms)
        else:
            result.duplicate = self._apply_ticket_event(
                event, ticket_id, partition, tickets, now_ms
            )
        if event.type == "ticket.created" and event.body.get("customer_id"):
            complaint = event.body.get("subject_kind") == "complaint"
            customer = str(event.body["customer_id"])
            value = activity(customer, event.event_id, event.occurred_at_ms, "ticket", complaint)
            result.activities.append((customer, value))
        if result.duplicate:
            self.metrics.child(self.metrics.duplicates, topic).inc()
            # Its time counted (a re-read after a rebuild): the marks may have moved.
            self.helpdesk.add_summary_write(partition, result.state_writes)
            return result
        self.metrics.child(self.metrics.events, topic, event.type).inc()
        # Keep the gauge at the newest event time, not the last one processed.
        if event.occurred_at_ms > self._newest_event_ms.get(topic, -(2**62)):
            self._newest_event_ms[topic] = event.occurred_at_ms
            gauge = self.metrics.child(self.metrics.last_event_timestamp, topic)
            gauge.set(event.occurred_at_ms / 1000.0)
        watermark = kpis.event_watermark_ms()
        if watermark is not None:
            # The clocks this event's time has run out: breached now, recorded in their
            # tickets here, inside stream iteration.
            for due_id, sla in self.sla.setdefault(partition, SlaIndex()).due(watermark):
                self._record_breach(partition, due_id, sla, tickets, write=True)
        self.helpdesk.add_summary_write(partition, result.state_writes)
        self._prune(partition, tickets)
        return result

    def _apply_ticket_event(
        self,
        event: Event,
        ticket_id: str,
        partition: int,
        tickets: MutableMapping[str, Any],
        now_ms: int,
    ) -> bool:
        """Insert the event into its ticket, apply what changed; True for a duplicate."""
        stored = tickets.get(ticket_id)
        state = TicketState.from_dict(stored) if stored is not None else TicketState(ticket_id)
        before = self._derive(state) if stored is not None else TicketView()
        refused = add_event(state, event)
        kpis = self.partition(partition)
        # A duplicate too: after a rebuild, the re-read events move the time on.
        kpis.observe(event.occurred_at_ms, now_ms)
        if refused == "duplicate":
            return True
        if refused == "full":
            self.metrics.dropped.labels(self.settings.helpdesk_topic, "ticket_history_full").inc()
            return False
        after = self._derive(state)
        self._apply_change(partition, state, before, after)
        self._store_ticket(partition, state, tickets)
        expires = expires_at_ms(after, self.settings.ticket_retention_ms)
        if expires is not None:
            heapq.heappush(self.expiry.setdefault(partition, []), (expires, ticket_id))
        if before.created_at_ms is None and after.created_at_ms is not None:
            queue = next(
                (
                    str(f.get("queue") or "unknown")
                    for _, k, _, f in state.events
                    if k == "ticket.created"
                ),
                "unknown",
            )
            if queue != OTHER and self.queue_labels.label(queue) == OTHER:
                self.metrics.label_overflow.labels("queue").inc()
        return False

    def _apply_change(
        self, partition: int, state: TicketState, before: TicketView, after: TicketView
    ) -> None:
        """Everything a change of a ticket feeds: windows, live counters, gauges, clocks."""
        kpis = self.partition(partition)
        self._count_late(kpis.apply(diff(before.contributions, after.contributions)), kpis)
        self._count_live(state, after.contributions)
        if after.active_key != state.counted_as:
            if state.counted_as is not None:
                kpis.active[state.counted_as] -= 1
                if kpis.active[state.counted_as] <= 0:
                    del kpis.active[state.counted_as]
            if after.active_key is not None:
                kpis.active[after.active_key] += 1
            state.counted_as = after.active_key
        self.sla.setdefault(partition, SlaIndex()).update(state.ticket_id, after.clocks)

    def _store_ticket(
        self, partition: int, state: TicketState, tickets: MutableMapping[str, Any]
    ) -> None:
        stored = state.to_dict()
        stored["_partition"] = partition  # lets a rebalance rebuild what the partition owns
        tickets[state.ticket_id] = stored

    def _count_late(self, late: int, kpis: PartitionKpis) -> None:
        if late:
            for family, n in kpis.late.items():
                self.metrics.late.labels(self.settings.helpdesk_topic, family).inc(n)
            kpis.late.clear()

    def _apply_scoped_event(
        self, event: Event, partition: int, scopes: MutableMapping[str, Any], now_ms: int
    ) -> bool:
        """Events with no ticket: agent shifts and anonymous self-service sessions."""
        body = event.body
        scope = (
            f"agent:{body['agent_id']}"
            if body.get("agent_id")
            else f"customer:{body.get('customer_id')}"
        )
        record = scopes.get(scope)
        record = dict(record) if isinstance(record, dict) else {"ids": []}
        kpis = self.partition(partition)
        kpis.observe(event.occurred_at_ms, now_ms)  # a duplicate too (see above)
        if event.event_id in record["ids"]:
            return True
        record["ids"] = [*record["ids"], event.event_id][-SCOPE_DEDUPE_IDS:]
        record["_partition"] = partition
        if event.type == "selfservice.session":
            session: list[Any] = [
                event.occurred_at_ms,
                int(body.get("screens", 0)),
                int(body.get("clicks", 0)),
                bool(body.get("succeeded")),
            ]
            # Kept for the rebuild of the windows; older ones are in final windows.
            horizon = event.occurred_at_ms - self.settings.ticket_retention_ms
            sessions = [s for s in record.get("sessions", []) if s[0] >= horizon]
            record["sessions"] = [*sessions, session][-SCOPE_DEDUPE_IDS:]
            at, screens, clicks, ok = session
            facts = session_contributions(at, screens, clicks, ok, f"s{len(sessions)}")
            self._count_late(kpis.apply((c, 1) for c in facts), kpis)
            self._count_live_facts(facts)
        scopes[scope] = record
        if event.type == "agent.shift":
            self._apply_shift(event, partition, scopes)
        return False

    def _prune(self, partition: int, tickets: MutableMapping[str, Any]) -> None:
        """Drop ticket states whose retention has passed in event time (never by the wall
        clock, so a replay of history keeps what it still needs)."""
        heap = self.expiry.get(partition)
        watermark = self.partition(partition).event_watermark_ms()
        if not heap or watermark is None:
            return
        retention = self.settings.ticket_retention_ms
        for _ in range(PRUNE_PER_EVENT):
            if not heap or heap[0][0] > watermark:
                return
            _, ticket_id = heapq.heappop(heap)
            stored = tickets.get(ticket_id)
            if stored is None:
                continue
            expires = expires_at_ms(self._derive(TicketState.from_dict(stored)), retention)
            if expires is not None and expires <= watermark:  # still due: not reopened since
                del tickets[ticket_id]
                self.sla.get(partition, SlaIndex()).update(ticket_id, [])
                self.metrics.tickets_pruned.inc()

    # --- SLA clocks -----------------------------------------------------------------
    def _record_breach(
        self,
        partition: int,
        ticket_id: str,
        sla: str,
        tickets: MutableMapping[str, Any],
        write: bool,
    ) -> None:
        """A running clock the watermark has passed: breached, recorded for good."""
        stored = tickets.get(ticket_id)
        if stored is None:
            return
        state = TicketState.from_dict(stored)
        if sla in state.breached:
            return
        before = self._derive(state)
        state.breached.append(sla)
        self._apply_change(partition, state, before, self._derive(state))
        if write:
            self._store_ticket(partition, state, tickets)
        else:
            self.pending_breaches.setdefault(partition, set()).add((ticket_id, sla))

    def _flag_breaches(self, partition: int, tickets: MutableMapping[str, Any]) -> None:
        """Write the breaches the clock recorded into their tickets (now that a table
        write reaches the changelog of this partition). Their effects are applied."""
        for ticket_id, sla in self.pending_breaches.pop(partition, set()):
            stored = tickets.get(ticket_id)
            if stored is None:
                continue
            state = TicketState.from_dict(stored)
            if sla not in state.breached:
                state.breached.append(sla)
            if f"sla:{sla}" not in state.live:
                state.live.append(f"sla:{sla}")
            self._store_ticket(partition, state, tickets)

    def expire_sla(self, wall: int, tickets: MutableMapping[str, Any] | None = None) -> int:
        """Record the breaches of clocks that ran out with no event to stop them.

        Recorded once the partition's watermark has passed the deadline, so an answer
        that was in time but arrives late (within grace) still counts as met. The
        breaching gauge does not wait: it follows the newest event time (and the wall
        clock in live mode).
        """
        if tickets is None:
            return 0
        expired = 0
        for number, index in self.sla.items():
            kpis = self.partitions.get(number)
            now = kpis.watermark_ms(wall if self.settings.live else None) if kpis else None
            if now is None:
                continue
            for ticket_id, sla in index.due(now):
                self._record_breach(number, ticket_id, sla, tickets, write=False)
                expired += 1
        return expired

    # --- live counters ------------------------------------------------------------
    def _count_live(self, state: TicketState, contributions: list[Contribution]) -> None:
        """Count each fact of the ticket once, the first time it appears."""
        done = set(state.live)
        fresh = [c for c in contributions if c.ident not in done and c.ident != "a"]
        if fresh:
            self._count_live_facts(fresh)
            state.live.extend(sorted({c.ident for c in fresh}))

    def _count_live_facts(self, facts: list[Contribution]) -> None:
        m = self.metrics
        child = m.child  # labels() children, looked up once
        groups: dict[str, list[Contribution]] = defaultdict(list)
        for c in facts:
            groups[c.ident].append(c)
        for group in groups.values():
            names = {c.name for c in group}
            for c in group:
                q, p = c.dims
                name = c.name
                kind, _, rest = name.partition(":")
                if name == "created":
                    flag = str("created_complaint" in names).lower()
                    child(m.tickets_created, q, p, flag).inc()
                elif name == "escalated":
                    flag = str("escalated_complaint" in names).lower()
                    child(m.tickets_escalated, q, p, flag).inc()
                elif kind == "solved":
                    child(m.tickets_solved, q, p, rest).inc()
                elif kind == "settled":
                    child(m.value_settled, self.currency_labels.label(rest)).inc(c.value)
                elif name == "reopened":
                    child(m.tickets_reopened, q, p).inc()
                elif name == "agent_replies":
                    child(m.agent_replies, q, p).inc()
                elif name == "handle_seconds":
                    child(m.handle_time, q).observe(c.value)
                elif name == "first_response_seconds":
                    child(m.first_response, q, p).observe(c.value)
                elif name == "resolution_seconds":
                    child(m.resolution, q, p, "first").observe(c.value)
                elif name == "full_resolution_seconds":
                    child(m.resolution, q, p, "full").observe(c.value)
                elif name == "requester_wait_seconds":
                    child(m.requester_wait, q, p).observe(c.value)
                elif name == "agent_work_seconds":
                    child(m.agent_work, q, p).observe(c.value)
                elif name == "touches":
                    child(m.touches, q, p).observe(c.value)
                elif kind == "csat":
                    child(m.csat, q, p, rest).inc()
                elif kind == "nps":
                    child(m.nps, q, p, rest).inc()
                elif kind == "sla":
                    sla, _, outcome = rest.partition(":")
                    child(m.sla, sla, q, p, outcome).inc()
                elif name == "selfservice:sessions":
                    ok = str("selfservice:succeeded" in names).lower()
                    child(m.selfservice_sessions, ok).inc()
                elif name in ("selfservice_screens", "selfservice_clicks"):
                    ok = str("selfservice:succeeded" in names).lower()
                    family = (
                        m.selfservice_screens
                        if name == "selfservice_screens"
                        else m.selfservice_clicks
                    )
                    child(family, ok).observe(c.value)

    def _apply_shift(self, event: Event, partition: int, scopes: MutableMapping[str, Any]) -> None:
        key = f"shift:{event.body['agent_id']}"
        record, delta = apply_shift(scopes.get(key), event.body["state"], event.occurred_at_ms)
        scopes[key] = {**record, "_partition": partition}
        self.on_shift[partition] = self.on_shift.get(partition, 0) + delta
        # The agent's time on shift already in the windows changes with its intervals.
        agents = self.shifts.setdefault(partition, {})
        before, after = agents.get(key, []), on_intervals(record["events"])
        agents[key] = after
        kpis = self.partition(partition)
        low, high = self._shift_low(kpis), self.shift_horizon.get(partition)
        if low is not None and high is not None:
            step = self._step_ms
            change = diff(
                agent_pieces(before, low, high, step), agent_pieces(after, low, high, step)
            )
            self._count_late(kpis.apply(change), kpis)

    def _shift_low(self, kpis: PartitionKpis) -> int | None:
        """Time on shift before the oldest open window of any size is final already."""
        return kpis.next_start_ms(max(self.settings.window_sizes_ms))

    def _account_shifts(self, number: int, kpis: PartitionKpis, until_ms: int | None) -> None:
        """Put the agents' time on shift up to `until_ms` into the windows (each tick,
        before windows close: an agent on shift all day has no event to do it)."""
        low = self._shift_low(kpis)
        if until_ms is None or low is None:
            return
        since = max(self.shift_horizon.get(number, low), low)
        if until_ms <= since:
            return
        self.shift_horizon[number] = until_ms
        for intervals in self.shifts.get(number, {}).values():
            pieces = agent_pieces(intervals, since, until_ms, self._step_ms)
            self._count_late(kpis.apply((c, 1) for c in pieces), kpis)

    # --- time ---------------------------------------------------------------------
    def tick(
        self,
        now_ms: int | None = None,
        tickets: MutableMapping[str, Any] | None = None,
        orders: MutableMapping[str, Any] | None = None,
        customers: MutableMapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """What time alone does, once a second: SLA clocks run out, windows close.

        Returns the messages for the window-partials topic: the partials of windows
        that closed, changed or became final, then each partition's marks when they
        moved (see stream/kpi/merge.py).
        """
        if not self.exporting:
            # Between a revocation and the rebuild, the partitions here may be another
            # worker's already: their partials or marks now could land between its reset
            # and its re-sent partials, and the merge would finalize windows without them.
            return []
        wall = wall_ms() if now_ms is None else now_ms
        self.expire_sla(wall, tickets)
        return (
            self.close_windows(wall)
            + self.orders.tick(wall, orders)
            + self.customers.tick(wall, customers)
        )

    def upstream_marks(self, now_ms: int | None = None) -> list[tuple[int, bytes]]:
        """(customer partition, value): every input partition's marks, for every customer
        partition, once a tick (a customer partition's time is the smallest of them)."""
        if not self.exporting:
            return []  # see tick()
        wall = wall_ms() if now_ms is None else now_ms
        clock = wall if self.settings.live else None
        out = []
        sources = (("h", self.helpdesk.partitions), ("o", self.orders.partitions))
        for prefix, partitions in sources:
            for number, kpis in sorted(partitions.items()):
                event_ms, watermark = kpis.event_mark_ms(clock), kpis.watermark_ms(clock)
                if event_ms is None or watermark is None:
                    continue
                value = upstream_mark(f"{prefix}{number}", event_ms, watermark)
                out += [(p, value) for p in range(self.settings.partitions)]
        return out

    def process_customer(
        self,
        raw: bytes,
        partition: int,
        customers: MutableMapping[str, Any],
        now_ms: int | None = None,
    ) -> CustomerResult:
        """One message of the customer-activity topic (see customer_flow.py)."""
        return self.customers.process(
            raw, partition, customers, wall_ms() if now_ms is None else now_ms
        )

    def load_customer_partitions(
        self,
        active: Iterable[int],
        state: Iterable[tuple[str, Any]],
        customers: Iterable[tuple[str, Any]],
    ) -> None:
        self.customers.load_customers(active, state, customers)

    def close_windows(self, wall: int) -> list[dict[str, Any]]:
        """Close windows on every owned partition; partials first, then the marks."""
        return self.helpdesk.close(wall, self._account_shifts)

    def partials_delivered(self) -> None:
        """The messages of the last tick are in Kafka: their marks may be persisted."""
        self.helpdesk.delivered()
        self.orders.delivered()
        self.customers.delivered()

    # --- orders -------------------------------------------------------------------
    def process_order(
        self,
        raw: bytes | None,
        partition: int,
        orders: MutableMapping[str, Any],
        now_ms: int | None = None,
    ) -> OrderResult:
        """Decode, dedupe and apply one orders.events message (see order_flow.py)."""
        result = self.orders.process(
            raw, partition, orders, wall_ms() if now_ms is None else now_ms
        )
        if result.event is not None and not result.duplicate:
            topic = self.settings.orders_topic
            at = result.event.occurred_at_ms
            if at > self._newest_event_ms.get(topic, -(2**62)):
                self._newest_event_ms[topic] = at
                self.metrics.child(self.metrics.last_event_timestamp, topic).set(at / 1000.0)
        return result

    def process_indicator(self, raw: bytes | None, now_ms: int | None = None) -> IndicatorResult:
        """One indicators.external message (see indicator_flow.py)."""
        return self.indicators.process(raw, wall_ms() if now_ms is None else now_ms)

    def customer_count_at(self, at_ms: int) -> float | None:
        """The reported customer count of the shortest period holding `at_ms`."""
        holding = [(e - s, v) for (s, e), v in self.customer_counts.items() if s <= at_ms < e]
        return min(holding)[1] if holding else None

    def merge_inputs(self, result: IndicatorResult) -> list[dict[str, Any]]:
        """What an indicator report gives the merge: a customer_count, for H8."""
        change = result.change
        if change is None or change.name != "customer_count":
            return []
        r = change.report
        return [
            {
                "source": "customers",
                "customer_count": r.value,
                "period_start_ms": r.period_start_ms,
                "period_end_ms": r.period_end_ms,
            }
        ]

    def load_order_partitions(
        self,
        active: Iterable[int],
        state: Iterable[tuple[str, Any]],
        orders: Iterable[tuple[str, Any]],
    ) -> None:
        self.orders.load(active, state, orders)
        self._drop_catch_up(self.settings.orders_topic)

    # --- merging the partitions' windows (the merge agent) ---------------------------
    def load_merge_state(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.merger.load(keys)
        n = len(ORDER_MERGE_PREFIX)
        self.order_merger.load(k[n:] for k in keys if k.startswith(ORDER_MERGE_PREFIX))
        n = len(CUSTOMER_MERGE_PREFIX)
        self.customer_merger.load(k[n:] for k in keys if k.startswith(CUSTOMER_MERGE_PREFIX))

    def load_customer_counts(self, items: Iterable[tuple[str, Any]]) -> None:
        """The customer counts the merge was given (merge table keys `c:cc|start|end`)."""
        self.customer_counts = {}
        for key, value in items:
            if key.startswith(f"{CUSTOMER_MERGE_PREFIX}cc|") and value is not None:
                _, start, end = key[len(CUSTOMER_MERGE_PREFIX) :].split("|")
                self.customer_counts[(int(start), int(end))] = float(value)

    def merge_step(
        self, message: dict[str, Any], state: MutableMapping[str, Any], now_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """Apply one partial or marks message; return the KPI messages now due
        (a None message is a tombstone for the compacted topic)."""
        merger = self.merger
        source = message.get("source")
        if "customer_count" in message:
            period = (int(message["period_start_ms"]), int(message["period_end_ms"]))
            self.customer_counts[period] = float(message["customer_count"])
            state[f"{CUSTOMER_MERGE_PREFIX}cc|{period[0]}|{period[1]}"] = message["customer_count"]
            return []
        if source == "orders":
            merger, state = self.order_merger, PrefixedState(state, ORDER_MERGE_PREFIX)
        elif source == "customers":
            merger, state = self.customer_merger, PrefixedState(state, CUSTOMER_MERGE_PREFIX)
        stale = merger.stale_partials
        out = merger.step(message, state, wall_ms() if now_ms is None else now_ms)
        if merger.stale_partials > stale:
            self.metrics.stale_partials.inc(merger.stale_partials - stale)
        # kpistream_kpi_messages_total counts them once delivered (agents.deliver_kpi).
        if source == "customers":
            for _, body in out:
                if body and body["kpi"] == "complaint_growth" and body["is_final"]:
                    self.latest_growth[body["window"]] = body["values"]
        return out

    # --- reading again after a rebuild -----------------------------------------------
    def catch_up(
        self, topic: str, partition: int, committed: int | None, end_offset: int | None
    ) -> None:
        """A rebuilt input partition reads again from `committed` (None: from its start);
        `end_offset` was the log end when it was assigned, so everything it had read
        before lies below it. Its held event time comes back once it gets there (at
        once when there is nothing to read again).

        `end_offset` None (the broker did not say): the time stays that of the records
        it reads; nothing is made final too early, some windows later than they could."""
        kpis = self._source_partitions(topic).get(partition)
        if kpis is None or kpis.held_max_event_ms is None:
            return
        if end_offset is not None and (committed or 0) >= end_offset:
            kpis.release_event_time()
        elif end_offset is not None:
            self._catch_up[(topic, partition)] = end_offset
        else:
            log.warning(
                "%s[%d]: no end offset; its event time is that of the records it reads",
                topic,
                partition,
            )

    def _source_partitions(self, topic: str) -> dict[int, PartitionKpis]:
        if topic == self.settings.helpdesk_topic:
            return self.helpdesk.partitions
        if topic == self.settings.orders_topic:
            return self.orders.partitions
        return {}

    def _drop_catch_up(self, topic: str) -> None:
        self._catch_up = {k: v for k, v in self._catch_up.items() if k[0] != topic}

    # --- export -------------------------------------------------------------------
    def record_position(self, topic: str, partition: int, offset: int, ts_ms: int | None) -> None:
        end = self._catch_up.get((topic, partition))
        if end is not None and offset + 1 >= end:
            # The last record read before the rebuild: it is processed before any tick.
            del self._catch_up[(topic, partition)]
            kpis = self._source_partitions(topic).get(partition)
            if kpis is not None:
                kpis.release_event_time()
                log.info("%s[%d]: read again up to offset %d", topic, partition, offset)
        position = self.positions.get((topic, partition))
        if position is None:
            position = self.positions[(topic, partition)] = Position()
            log.info("%s[%d]: first record at offset %d", topic, partition, offset)
        elif offset != position.offset + 1:
            log.info(
                "%s[%d]: offset %d after %d (a seek, a gap or a re-delivery)",
                topic,
                partition,
                offset,
                position.offset,
            )
        position.offset, position.timestamp_ms = offset, ts_ms

    def set_highwater_source(self, highwater: Any) -> None:
        """`highwater(topic, partition) -> int | None`, from the Kafka consumer."""
        self._highwater = highwater

    def _sla_now_ms(self, partition: int, wall: int) -> int | None:
        """A partition's SLA clock: its newest event time, and in live mode the wall clock."""
        kpis = self.partitions.get(partition)
        newest = kpis.max_event_ms if kpis is not None else None
        if self.settings.live:
            return wall if newest is None else max(newest, wall)
        return newest

    def pause_export(self) -> None:
        """Partitions revoked: show none of them until `resume_export`."""
        self.exporting = False

    def resume_export(self) -> None:
        """The rebalance is complete and the owned partitions are rebuilt."""
        self.exporting = True

    def snapshot(self) -> KpiSnapshot:
        wall = wall_ms()
        if not self.exporting:
            return build_snapshot({}, None, self.settings.sketch_relative_accuracy, Counter())
        sla_clocks: Counter[tuple[str, str, str, str]] = Counter()
        for number, index in self.sla.items():
            now = self._sla_now_ms(number, wall)
            if now is not None:
                sla_clocks.update(index.counts(now, self.sla_policy.warn_ms))
        snap = build_snapshot(
            self.partitions,
            wall if self.settings.live else None,
            self.settings.sketch_relative_accuracy,
            sla_clocks,
        )
        return replace(snap, agents_on_shift=sum(self.on_shift.values()))

    def progress(self) -> list[PartitionProgress]:
        """Consumer positions of the partitions this worker owns: the input partitions,
        and the window-partials partition while this worker runs the merge (a merge
        that falls behind delays every KPI message)."""
        if not self.exporting:
            return []
        now = wall_ms()
        clock = now if self.settings.live else None
        rows = []
        sources = (
            (self.settings.helpdesk_topic, self.partitions),
            (self.settings.orders_topic, self.orders.partitions),
            (self.settings.customers_topic, self.customers.partitions),
        )
        for topic, partitions in sources:
            for number, kpis in sorted(partitions.items()):
                lag_records, lag_seconds = self._lag(topic, number, now)
                watermark = kpis.watermark_ms(clock)
                rows.append(PartitionProgress(topic, number, lag_records, lag_seconds, watermark))
        if self.owns_merge:
            partials = self.settings.partials_topic
            lag_records, lag_seconds = self._lag(partials, 0, now)
            rows.append(PartitionProgress(partials, 0, lag_records, lag_seconds, None))
        return rows

    def _lag(self, topic: str, partition: int, now: int) -> tuple[int | None, float | None]:
        position = self.positions.get((topic, partition), Position())
        highwater = self._highwater(topic, partition) if self._highwater else None
        if highwater is None:
            return None, None
        lag_records = max(0, highwater - (position.offset + 1))
        if lag_records == 0:
            return 0, 0.0
        if position.timestamp_ms is None:
            return lag_records, None
        return lag_records, max(0.0, (now - position.timestamp_ms) / 1000.0)
