"""The worker's in-process state and the steps an agent takes for one message.

Kept apart from the Faust wiring so that the whole path (decode, dedupe, state machine,
aggregates, metrics) runs in tests with plain dicts standing in for tables. Tables are
passed in as mutable mappings; the agent hands in Faust tables, tests hand in dicts.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry

from stream.codec import HELPDESK_TYPES, Decoder, Rejection
from stream.export.metrics import KpiCollector, PartitionProgress, PipelineMetrics
from stream.kpi.events import Event
from stream.kpi.labels import OTHER, BoundedLabels
from stream.kpi.merge import (
    FIRST_RESPONSE_TIME,
    is_final,
    merged_messages,
    parse_window_key,
    partial,
)
from stream.kpi.partition import PartitionKpis, PieceId
from stream.kpi.shifts import apply_shift
from stream.kpi.sla import (
    FIRST_RESPONSE,
    RESOLUTION,
    SlaIndex,
    open_clocks,
    settle_stopped_clocks,
    sla_priority,
)
from stream.kpi.snapshot import KpiSnapshot, build_snapshot
from stream.kpi.surveys import nps_category
from stream.kpi.tickets import (
    TicketFact,
    TicketOutcome,
    TicketState,
    apply_ticket_event,
    expires_at_ms,
)
from stream.settings import Settings

# Expired ticket states dropped per event at most: pruning keeps pace with the stream
# without a pause after a long idle period.
PRUNE_PER_EVENT = 50

# Events with no ticket (agent shifts, anonymous self-service) are deduplicated within a
# scope (the agent or the customer), remembering this many recent ids per scope.
SCOPE_DEDUPE_IDS = 1000


def summary_key(partition: int) -> str:
    return f"{partition}|summary"


def piece_key(partition: int, piece: PieceId) -> str:
    size, start, (queue, priority) = piece
    return f"{partition}|w|{size}|{start}|{queue}|{priority}"


def parse_piece_key(rest: str) -> PieceId:
    """The inverse of piece_key without its partition: 'w|size|start|queue|priority'."""
    _, size, start, remainder = rest.split("|", 3)
    # Priorities are an enum without '|'; a queue name may contain one.
    queue, priority = remainder.rsplit("|", 1)
    return int(size), int(start), (queue, priority)


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


class WorkerRuntime:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.helpdesk_decoder = Decoder(
            HELPDESK_TYPES, max_message_bytes=settings.max_message_bytes
        )
        self.queue_labels = BoundedLabels(settings.queues, settings.max_queues)
        # ISO 4217 codes pass the schema, but only a handful are in use: bound them too.
        self.currency_labels = BoundedLabels((), 20)
        self.partitions: dict[int, PartitionKpis] = {}
        self.positions: dict[tuple[str, int], Position] = {}
        # Closed windows whose table entries must be deleted by the next event of their
        # partition (Faust writes a changelog record only from inside stream iteration).
        self.pending_deletes: dict[int, set[str]] = {}
        self.sla_policy = settings.sla_policy()
        self.sla: dict[int, SlaIndex] = {}
        # Breaches counted by the clock (no event): flagged in the ticket's state by the
        # partition's next event, so a later answer does not count the ticket again.
        self.pending_breaches: dict[int, set[tuple[str, str]]] = {}
        # Per partition: a heap of (expires_at_ms, ticket_id) of tickets that may be dropped.
        self.expiry: dict[int, list[tuple[int, str]]] = {}
        self._reported_watermarks: dict[int, int] = {}
        self.on_shift: dict[int, int] = {}  # agents on shift, by partition
        self.registry.register(KpiCollector(self.snapshot, self.progress))
        self._highwater: Any = None
        self._newest_event_ms: dict[str, int] = {}

    # --- partitions -------------------------------------------------------------
    def new_partition(self) -> PartitionKpis:
        return PartitionKpis(
            window_sizes_ms=self.settings.window_sizes_ms,
            grace_ms=self.settings.grace_ms,
            relative_accuracy=self.settings.sketch_relative_accuracy,
        )

    def load_partitions(
        self,
        active: Iterable[int],
        state: Iterable[tuple[str, Any]],
        tickets: Iterable[tuple[str, Any]] = (),
        scopes: Iterable[tuple[str, Any]] = (),
    ) -> None:
        """Rebuild the in-memory aggregates of the active partitions from table state.

        Called when a rebalance completes (after changelog recovery), so the gauges are
        right from the first scrape even before the next event arrives.
        """
        wanted = set(active)
        rebuilt = {p: self.new_partition() for p in wanted}
        for key, value in state:
            if value is None:
                continue
            part, _, rest = key.partition("|")
            if not part.isdigit() or int(part) not in wanted:
                continue
            kpis = rebuilt[int(part)]
            if rest == "summary":
                kpis.load_summary(value)
            elif rest.startswith("w|"):
                kpis.load_piece(parse_piece_key(rest), value)
        self.partitions = rebuilt
        self.pending_deletes = {p: d for p, d in self.pending_deletes.items() if p in wanted}
        self.pending_breaches = {p: b for p, b in self.pending_breaches.items() if p in wanted}
        self._reported_watermarks = {
            p: w for p, w in self._reported_watermarks.items() if p in wanted
        }
        self.sla = {p: SlaIndex() for p in wanted}
        self.expiry = {p: [] for p in wanted}
        retention = self.settings.ticket_retention_ms
        for ticket_id, stored in tickets:
            if stored is not None and stored.get("_partition") in wanted:
                ticket = TicketState.from_dict(stored)
                clocks = open_clocks(ticket, self.sla_policy, self._ticket_queue(ticket))
                self.sla[stored["_partition"]].update(ticket_id, clocks)
                expires = expires_at_ms(ticket, retention)
                if expires is not None:
                    self.expiry[stored["_partition"]].append((expires, ticket_id))
        for heap in self.expiry.values():
            heapq.heapify(heap)
        self.on_shift = {p: 0 for p in wanted}
        for key, record in scopes:
            if key.startswith("shift:") and record and record.get("_partition") in wanted:
                self.on_shift[record["_partition"]] += record.get("state") == "on"

    def partition(self, number: int) -> PartitionKpis:
        kpis = self.partitions.get(number)
        if kpis is None:
            kpis = self.partitions[number] = self.new_partition()
        return kpis

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
        decoded = self.helpdesk_decoder.decode(raw)
        if isinstance(decoded, Rejection):
            self.metrics.rejected.labels(topic, decoded.reason.value).inc()
            return HelpdeskResult(rejection=decoded)
        event = decoded
        result = HelpdeskResult(event=event)
        ticket_id = event.body.get("ticket_id")
        kpis = self.partition(partition)
        if ticket_id is None:
            result.duplicate = self._seen_in_scope(event, scopes)
            if not result.duplicate and event.type == "agent.shift":
                self._apply_shift(event, partition, scopes)
        else:
            result.duplicate = self._apply_ticket_event(
                event, ticket_id, partition, tickets, now_ms, result.state_writes
            )
        if result.duplicate:
            self.metrics.duplicates.labels(topic).inc()
            return result
        if event.type == "selfservice.session":
            self._count_selfservice(event)
        if kpis.max_event_ms is None or event.occurred_at_ms > kpis.max_event_ms:
            kpis.max_event_ms = event.occurred_at_ms
            result.state_writes.setdefault(summary_key(partition), kpis.summary_dict())
        self.metrics.events.labels(topic, event.type).inc()
        # Keep the gauge at the newest event time, not the last one processed.
        if event.occurred_at_ms > self._newest_event_ms.get(topic, -(2**62)):
            self._newest_event_ms[topic] = event.occurred_at_ms
            self.metrics.last_event_timestamp.labels(topic).set(event.occurred_at_ms / 1000.0)
        for key in self.pending_deletes.pop(partition, ()):
            result.state_writes[key] = None
        self._flag_breaches(partition, tickets)
        self._prune(partition, tickets)
        return result

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
            expires = expires_at_ms(TicketState.from_dict(stored), retention)
            if expires is not None and expires <= watermark:  # still due: not reopened since
                del tickets[ticket_id]
                self.sla.get(partition, SlaIndex()).update(ticket_id, [])
                self.metrics.tickets_pruned.inc()

    def _apply_ticket_event(
        self,
        event: Event,
        ticket_id: str,
        partition: int,
        tickets: MutableMapping[str, Any],
        now_ms: int,
        state_writes: dict[str, Any],
    ) -> bool:
        """The ticket state machine, then everything it feeds; True for a duplicate."""
        topic = self.settings.helpdesk_topic
        kpis = self.partition(partition)
        stored = tickets.get(ticket_id)
        was_created = stored is not None and stored.get("created_at_ms") is not None
        outcome = apply_ticket_event(
            TicketState.from_dict(stored) if stored is not None else None,
            event,
            self.queue_labels.label,
        )
        if outcome.duplicate:
            return True
        self._track_sla(partition, ticket_id, outcome)
        updated = outcome.state.to_dict()
        # The partition lets a rebalance rebuild the SLA clocks it owns.
        updated["_partition"] = partition
        tickets[ticket_id] = updated
        expires = expires_at_ms(outcome.state, self.settings.ticket_retention_ms)
        if expires is not None:
            heapq.heappush(self.expiry.setdefault(partition, []), (expires, ticket_id))
        late_before = kpis.late_first_responses_total
        changed = kpis.apply(outcome, event.occurred_at_ms, now_ms)
        late = kpis.late_first_responses_total - late_before
        if late:
            self.metrics.late.labels(topic, "first_response").inc(late)
        self._count_facts(outcome.facts)
        for response in outcome.first_responses:
            self.metrics.first_response.labels(response.queue, response.priority).observe(
                response.latency_ms / 1000.0
            )
        if outcome.active_moves:
            state_writes[summary_key(partition)] = kpis.summary_dict()
        for piece in changed:
            state_writes[piece_key(partition, piece)] = kpis.piece_dict(piece)
        newly_created = not was_created and outcome.state.created
        queue = outcome.state.queue or "unknown"
        if newly_created and queue != OTHER and self.queue_labels.label(queue) == OTHER:
            self.metrics.label_overflow.labels("queue").inc()
        return False

    # --- SLA clocks -----------------------------------------------------------------
    def _ticket_queue(self, ticket: TicketState) -> str:
        return self.queue_labels.label(ticket.queue or "unknown")

    def _breach_counted(self, partition: int, ticket: TicketState, sla: str) -> bool:
        pending = self.pending_breaches.get(partition, set())
        return sla in ticket.sla_breached or (ticket.ticket_id, sla) in pending

    def _track_sla(self, partition: int, ticket_id: str, outcome: TicketOutcome) -> None:
        """Count the results of the clocks this event stopped; re-derive the running ones."""
        ticket = outcome.state
        pending = self.pending_breaches.get(partition, set())
        for sla in (FIRST_RESPONSE, RESOLUTION):
            # A breach counted by the clock and not yet written: this write records it.
            if (ticket_id, sla) in pending:
                pending.discard((ticket_id, sla))
                if sla not in ticket.sla_breached:
                    ticket.sla_breached.append(sla)
        queue, priority = self._ticket_queue(ticket), sla_priority(ticket)
        for sla, result in settle_stopped_clocks(ticket, self.sla_policy):
            self.metrics.sla.labels(sla, queue, priority, result).inc()
        index = self.sla.setdefault(partition, SlaIndex())
        index.update(ticket_id, open_clocks(ticket, self.sla_policy, queue))

    def _sla_now_ms(self, partition: int, wall: int) -> int | None:
        """A partition's SLA clock: its newest event time, and in live mode the wall clock."""
        kpis = self.partitions.get(partition)
        newest = kpis.max_event_ms if kpis is not None else None
        if self.settings.live:
            return wall if newest is None else max(newest, wall)
        return newest

    def expire_sla(self, wall: int) -> int:
        """Count the breaches of clocks that ran out with no event to stop them.

        Counted once the partition's watermark has passed the deadline, so an answer
        that was in time but arrives late (within grace) is still counted as met. The
        breaching gauge does not wait: it follows the newest event time (and the wall
        clock in live mode).
        """
        expired = 0
        for number, index in self.sla.items():
            kpis = self.partitions.get(number)
            now = kpis.watermark_ms(wall if self.settings.live else None) if kpis else None
            if now is None:
                continue
            pending = self.pending_breaches.setdefault(number, set())
            for clock in index.expire(now, pending):
                self.metrics.sla.labels(clock.sla, clock.queue, clock.priority, "breached").inc()
                pending.add((clock.ticket_id, clock.sla))
                expired += 1
        return expired

    def _flag_breaches(self, partition: int, tickets: MutableMapping[str, Any]) -> None:
        """Write the clock-counted breaches into their tickets (inside stream iteration,
        where a table write reaches the changelog of this partition)."""
        for ticket_id, sla in self.pending_breaches.pop(partition, set()):
            stored = tickets.get(ticket_id)
            if stored is None:
                continue
            ticket = TicketState.from_dict(stored)
            if sla not in ticket.sla_breached:
                ticket.sla_breached.append(sla)
            updated = ticket.to_dict()
            updated["_partition"] = partition
            tickets[ticket_id] = updated
            self.sla.setdefault(partition, SlaIndex()).update(
                ticket_id, open_clocks(ticket, self.sla_policy, self._ticket_queue(ticket))
            )

    def _count_facts(self, facts: list[TicketFact]) -> None:
        m = self.metrics
        for fact in facts:
            dims = (fact.queue, fact.priority)
            complaint = "true" if fact.complaint else "false"
            if fact.kind == "created":
                m.tickets_created.labels(*dims, complaint).inc()
            elif fact.kind == "escalated":
                m.tickets_escalated.labels(*dims, complaint).inc()
            elif fact.kind == "solved":
                m.tickets_solved.labels(*dims, fact.method or "agent").inc()
                if fact.seconds is not None:  # the first solve
                    m.resolution.labels(*dims, "first").observe(fact.seconds)
                if fact.wait_seconds is not None:
                    m.requester_wait.labels(*dims).observe(fact.wait_seconds)
                    m.touches.labels(*dims).observe(fact.touches or 0)
                if fact.amount is not None and fact.currency:
                    m.value_settled.labels(self.currency_labels.label(fact.currency)).inc(
                        float(fact.amount)
                    )
            elif fact.kind == "reopened":
                m.tickets_reopened.labels(*dims).inc()
            elif fact.kind == "closed" and fact.seconds is not None:
                m.resolution.labels(*dims, "full").observe(fact.seconds)
            elif fact.kind == "agent_reply":
                m.agent_replies.labels(*dims).inc()
                if fact.seconds is not None:
                    m.handle_time.labels(fact.queue).observe(fact.seconds)
            elif fact.kind == "csat" and fact.score is not None:
                m.csat.labels(*dims, str(fact.score)).inc()
            elif fact.kind == "nps" and fact.score is not None:
                m.nps.labels(*dims, nps_category(fact.score)).inc()

    def _count_selfservice(self, event: Event) -> None:
        succeeded = "true" if event.body.get("succeeded") else "false"
        self.metrics.selfservice_sessions.labels(succeeded).inc()
        self.metrics.selfservice_screens.labels(succeeded).observe(event.body.get("screens", 0))
        self.metrics.selfservice_clicks.labels(succeeded).observe(event.body.get("clicks", 0))

    def _seen_in_scope(self, event: Event, scopes: MutableMapping[str, Any]) -> bool:
        body = event.body
        scope = (
            f"agent:{body['agent_id']}"
            if body.get("agent_id")
            else f"customer:{body.get('customer_id')}"
        )
        seen: list[str] = list(scopes.get(scope) or [])
        if event.event_id in seen:
            return True
        seen.append(event.event_id)
        scopes[scope] = seen[-SCOPE_DEDUPE_IDS:]
        return False

    def _apply_shift(self, event: Event, partition: int, scopes: MutableMapping[str, Any]) -> None:
        key = f"shift:{event.body['agent_id']}"
        record, delta = apply_shift(scopes.get(key), event.body["state"], event.occurred_at_ms)
        scopes[key] = {**record, "_partition": partition}
        self.on_shift[partition] = self.on_shift.get(partition, 0) + delta

    # --- time ---------------------------------------------------------------------
    def tick(self, now_ms: int | None = None) -> list[dict[str, Any]]:
        """What time alone does, once a second: SLA clocks run out, windows close.

        Returns the messages for the window-partials topic: a partial per closed window,
        then each partition's watermark when it moved (see stream/kpi/merge.py).
        """
        wall = wall_ms() if now_ms is None else now_ms
        self.expire_sla(wall)
        return self.close_windows(wall)

    def close_windows(self, wall: int) -> list[dict[str, Any]]:
        """Close every window the watermark has passed, on every owned partition."""
        clock = wall if self.settings.live else None
        messages: list[dict[str, Any]] = []
        for number, kpis in self.partitions.items():
            for window in kpis.close_windows(clock):
                self.pending_deletes.setdefault(number, set()).update(
                    piece_key(number, (window.size_ms, window.start_ms, dims))
                    for dims in window.sketches
                )
                sketches = {dims: sk.to_dict() for dims, sk in window.sketches.items()}
                messages.append(
                    partial(FIRST_RESPONSE_TIME, window.size_ms, window.start_ms, number, sketches)
                )
            watermark = kpis.closed_watermark_ms
            if watermark is not None and watermark > self._reported_watermarks.get(number, -1):
                self._reported_watermarks[number] = watermark
                messages.append({"partition": number, "watermark": watermark})
        return messages

    # --- merging the partitions' windows (the merge agent) ---------------------------
    def merge_step(
        self, message: dict[str, Any], state: MutableMapping[str, Any], now_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Apply one partial or watermark; return the KPI messages of windows now final.

        `state` holds `wm|<partition>` -> watermark and `w|<window key>` -> partials by
        partition (the merge agent's table; one partition, so one owner at a time).
        """
        partition = int(message["partition"])
        if "watermark" in message:
            key = f"wm|{partition}"
            if int(message["watermark"]) > int(state.get(key) or -1):
                state[key] = int(message["watermark"])
        else:
            key = f"w|{message['window']}"
            partials = dict(state.get(key) or {})
            partials[str(partition)] = message["sketches"]
            state[key] = partials
        watermarks = {
            p: int(w) for p in range(self.settings.partitions) if (w := state.get(f"wm|{p}"))
        }
        out: list[tuple[str, dict[str, Any]]] = []
        emitted_at = wall_ms() if now_ms is None else now_ms
        for key in [k for k in list(state.keys()) if k.startswith("w|")]:
            _, size_ms, start_ms = parse_window_key(key[2:])
            if is_final(size_ms, start_ms, watermarks, self.settings.partitions):
                out += merged_messages(key[2:], state[key], emitted_at)
                del state[key]
        self.metrics.kpi_messages.inc(len(out))
        return out

    # --- export -------------------------------------------------------------------
    def record_position(self, topic: str, partition: int, offset: int, ts_ms: int | None) -> None:
        position = self.positions.setdefault((topic, partition), Position())
        position.offset, position.timestamp_ms = offset, ts_ms

    def set_highwater_source(self, highwater: Any) -> None:
        """`highwater(topic, partition) -> int | None`, from the Kafka consumer."""
        self._highwater = highwater

    def snapshot(self) -> KpiSnapshot:
        wall = wall_ms()
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
        now = wall_ms()
        rows = []
        topic = self.settings.helpdesk_topic
        for number, kpis in sorted(self.partitions.items()):
            position = self.positions.get((topic, number), Position())
            lag_records: int | None = None
            lag_seconds: float | None = None
            highwater = self._highwater(topic, number) if self._highwater else None
            if highwater is not None:
                lag_records = max(0, highwater - (position.offset + 1))
                if lag_records == 0:
                    lag_seconds = 0.0
                elif position.timestamp_ms is not None:
                    lag_seconds = max(0.0, (now - position.timestamp_ms) / 1000.0)
            rows.append(
                PartitionProgress(
                    topic,
                    number,
                    lag_records,
                    lag_seconds,
                    kpis.watermark_ms(now if self.settings.live else None),
                )
            )
        return rows
