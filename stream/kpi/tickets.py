"""The ticket state machine: one ticket's facts, and what each event changes.

Pure: given the stored state and one event, `apply_ticket_event` returns the new state
and the KPI effects (active-gauge moves, first responses). The Faust agent stores the
state in a changelogged table keyed by ticket_id, so a ticket's events are applied in
partition order by exactly one worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.events import ACTIVE_STATUSES, Event

# A ticket's place in the active-issues gauge: (queue label, priority, status).
ActiveKey = tuple[str, str, str]

# Events that arrived before their ticket.created are kept, up to this many, and
# replayed when it arrives (EVENTS.md: events may come out of order).
MAX_EARLY_EVENTS = 200


@dataclass(frozen=True, slots=True)
class FirstResponse:
    """The first public agent reply of a ticket: its latency and where it counts."""

    queue: str  # label value, already bounded
    priority: str
    responded_at_ms: int
    latency_ms: int


@dataclass(frozen=True, slots=True)
class TicketFact:
    """Something countable that happened to a ticket, labelled by its queue and priority.

    kind is one of: created, escalated, solved, reopened, closed, agent_reply, csat, nps.
    Counted once per event (duplicates never produce facts).
    """

    kind: str
    queue: str  # label value, already bounded
    priority: str
    seconds: float | None = None  # solved: first resolution; closed: full resolution;
    wait_seconds: float | None = None  # solved (first): requester wait
    # agent_reply: handle time when the event carries it
    method: str | None = None  # solved: how
    touches: int | None = None  # solved: public agent replies before this solve
    score: int | None = None  # csat 1..5, nps 0..10
    amount: str | None = None  # solved: settled amount, a decimal string
    currency: str | None = None
    complaint: bool = False  # the ticket's subject_kind is "complaint"


@dataclass(slots=True)
class TicketState:
    ticket_id: str
    customer_id: str | None = None
    created_at_ms: int | None = None
    queue: str | None = None
    priority: str | None = None
    channel: str | None = None
    status: str = "new"
    # Event time of the value in force: a newer event wins, an older one arriving late
    # does not overwrite it (status, queue and priority can arrive out of order).
    status_at_ms: int = -(2**62)
    queue_at_ms: int = -(2**62)
    priority_at_ms: int = -(2**62)
    first_response_at_ms: int | None = None
    subject_kind: str | None = None
    sla_priority: str | None = None  # the priority when the SLA clocks started
    # SLAs whose breach was already counted when their clock ran out (never twice).
    sla_breached: list[str] = field(default_factory=list)
    # SLAs whose clock has stopped and whose result has been counted.
    sla_done: list[str] = field(default_factory=list)
    closed_at_ms: int | None = None  # the first close
    # Requester wait: time in new/open (the customer waits on us), paused in
    # pending/on_hold (we wait on the customer) and stopped once solved or closed.
    wait_ms: int = 0
    wait_since_ms: int | None = None  # when the running wait clock last (re)started
    solved_at_ms: int | None = None  # the latest solve
    first_solved_at_ms: int | None = None
    agent_replies: int = 0  # public agent replies ("touches")
    counted_as: ActiveKey | None = None
    seen_event_ids: list[str] = field(default_factory=list)
    early_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def created(self) -> bool:
        return self.created_at_ms is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "customer_id": self.customer_id,
            "created_at_ms": self.created_at_ms,
            "queue": self.queue,
            "priority": self.priority,
            "channel": self.channel,
            "status": self.status,
            "status_at_ms": self.status_at_ms,
            "queue_at_ms": self.queue_at_ms,
            "priority_at_ms": self.priority_at_ms,
            "first_response_at_ms": self.first_response_at_ms,
            "subject_kind": self.subject_kind,
            "sla_priority": self.sla_priority,
            "sla_breached": self.sla_breached,
            "sla_done": self.sla_done,
            "closed_at_ms": self.closed_at_ms,
            "wait_ms": self.wait_ms,
            "wait_since_ms": self.wait_since_ms,
            "solved_at_ms": self.solved_at_ms,
            "first_solved_at_ms": self.first_solved_at_ms,
            "agent_replies": self.agent_replies,
            "counted_as": list(self.counted_as) if self.counted_as else None,
            "seen_event_ids": self.seen_event_ids,
            "early_events": self.early_events,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TicketState:
        counted = data.get("counted_as")
        return cls(
            ticket_id=data["ticket_id"],
            customer_id=data.get("customer_id"),
            created_at_ms=data.get("created_at_ms"),
            queue=data.get("queue"),
            priority=data.get("priority"),
            channel=data.get("channel"),
            status=data.get("status", "new"),
            status_at_ms=data.get("status_at_ms", -(2**62)),
            queue_at_ms=data.get("queue_at_ms", -(2**62)),
            priority_at_ms=data.get("priority_at_ms", -(2**62)),
            first_response_at_ms=data.get("first_response_at_ms"),
            subject_kind=data.get("subject_kind"),
            sla_priority=data.get("sla_priority"),
            sla_breached=list(data.get("sla_breached", [])),
            sla_done=list(data.get("sla_done", [])),
            closed_at_ms=data.get("closed_at_ms"),
            wait_ms=data.get("wait_ms", 0),
            wait_since_ms=data.get("wait_since_ms"),
            solved_at_ms=data.get("solved_at_ms"),
            first_solved_at_ms=data.get("first_solved_at_ms"),
            agent_replies=data.get("agent_replies", 0),
            counted_as=(counted[0], counted[1], counted[2]) if counted else None,
            seen_event_ids=list(data.get("seen_event_ids", [])),
            early_events=list(data.get("early_events", [])),
        )


@dataclass(slots=True)
class TicketOutcome:
    """What one event did to a ticket, for the aggregates."""

    state: TicketState
    duplicate: bool = False
    buffered: bool = False  # kept until the ticket's ticket.created arrives
    active_moves: list[tuple[ActiveKey, int]] = field(default_factory=list)
    first_responses: list[FirstResponse] = field(default_factory=list)
    facts: list[TicketFact] = field(default_factory=list)


def expires_at_ms(state: TicketState, retention_ms: int) -> int | None:
    """When a ticket's state may be dropped: `retention_ms` after its close, or after the
    newest event of a ticket whose ticket.created never came. None while it lives.

    Until then its event ids deduplicate re-deliveries; the retention is the dedupe
    horizon for a closed ticket.
    """
    if not state.created:
        newest = max((e["occurred_at_ms"] for e in state.early_events), default=None)
        return None if newest is None else newest + retention_ms
    if state.status == "closed" and state.closed_at_ms is not None:
        return max(state.closed_at_ms, state.status_at_ms) + retention_ms
    return None


def is_first_response(event: Event) -> bool:
    """A public reply written by an agent: not the customer, not a note, not automation."""
    return (
        event.type == "ticket.replied"
        and event.get("author") == "agent"
        and event.get("public") is True
    )


def apply_ticket_event(
    state: TicketState | None,
    event: Event,
    queue_label: Callable[[str], str],
) -> TicketOutcome:
    """Apply one event of ticket `event.body['ticket_id']` to its state.

    `queue_label` bounds queue names for labels; the label a ticket is counted under is
    stored with it, so moving it out of the gauge never depends on the mapping again.
    """
    if state is None:
        state = TicketState(ticket_id=event.body["ticket_id"])
    outcome = TicketOutcome(state=state)
    if event.event_id in state.seen_event_ids:
        outcome.duplicate = True
        return outcome
    state.seen_event_ids.append(event.event_id)

    if not state.created and event.type != "ticket.created":
        if len(state.early_events) < MAX_EARLY_EVENTS:
            state.early_events.append(_event_to_dict(event))
        outcome.buffered = True
        return outcome

    before = state.counted_as
    _apply(state, event, outcome, queue_label)
    if event.type == "ticket.created" and state.early_events:
        early = sorted(state.early_events, key=lambda e: e["occurred_at_ms"])
        state.early_events = []
        for item in early:
            _apply(state, _event_from_dict(item), outcome, queue_label)

    after = _active_key(state, queue_label)
    if after != before:
        if before is not None:
            outcome.active_moves.append((before, -1))
        if after is not None:
            outcome.active_moves.append((after, +1))
        state.counted_as = after
    return outcome


def _active_key(state: TicketState, queue_label: Callable[[str], str]) -> ActiveKey | None:
    if not state.created or state.status not in ACTIVE_STATUSES:
        return None
    return (queue_label(state.queue or "unknown"), state.priority or "normal", state.status)


def _apply(
    state: TicketState,
    event: Event,
    outcome: TicketOutcome,
    queue_label: Callable[[str], str],
) -> None:
    kind = event.type
    at = event.occurred_at_ms
    body = event.body

    def fact(name: str, **values: Any) -> None:
        outcome.facts.append(
            TicketFact(
                name,
                queue_label(state.queue or "unknown"),
                state.priority or "normal",
                complaint=state.subject_kind == "complaint",
                **values,
            )
        )

    if kind == "ticket.created":
        state.created_at_ms = at
        state.customer_id = body.get("customer_id")
        state.channel = body.get("channel")
        state.subject_kind = body.get("subject_kind")
        _set_queue(state, body.get("queue"), at)
        _set_priority(state, body.get("priority"), at)
        state.sla_priority = body.get("priority")
        _set_status(state, "new", at)
        state.wait_ms, state.wait_since_ms = 0, at
        fact("created")
    elif kind == "ticket.replied":
        if is_first_response(event):
            state.agent_replies += 1
            handle = body.get("handle_seconds")
            fact("agent_reply", seconds=float(handle) if handle is not None else None)
        if is_first_response(event) and state.first_response_at_ms is None:
            state.first_response_at_ms = at
            created = state.created_at_ms if state.created_at_ms is not None else at
            outcome.first_responses.append(
                FirstResponse(
                    queue=queue_label(state.queue or "unknown"),
                    priority=state.priority or "normal",
                    responded_at_ms=at,
                    # A reply stamped before the creation (producer clock skew) counts as
                    # an immediate response rather than a negative latency.
                    latency_ms=max(0, at - created),
                )
            )
    elif kind == "ticket.status_changed":
        _set_status(state, body["status"], at)
    elif kind == "ticket.solved":
        _set_status(state, "solved", at)
        created = state.created_at_ms if state.created_at_ms is not None else at
        first = state.first_solved_at_ms is None
        state.solved_at_ms = at
        if first:
            state.first_solved_at_ms = at
        settled = body.get("settled_amount") or {}
        fact(
            "solved",
            # First resolution: to the first solve. Full resolution is counted at close.
            seconds=max(0, at - created) / 1000.0 if first else None,
            wait_seconds=state.wait_ms / 1000.0 if first else None,
            method=body.get("method"),
            touches=state.agent_replies,
            amount=settled.get("value"),
            currency=settled.get("currency"),
        )
    elif kind == "ticket.reopened":
        _set_status(state, "open", at)
        fact("reopened")
    elif kind == "ticket.closed":
        _set_status(state, "closed", at)
        if state.closed_at_ms is None:
            state.closed_at_ms = at
        created = state.created_at_ms if state.created_at_ms is not None else at
        # A closed ticket cannot be reopened: its latest solve is its final one.
        solved = state.solved_at_ms if state.solved_at_ms is not None else at
        fact("closed", seconds=max(0, solved - created) / 1000.0)
    elif kind == "ticket.escalated":
        fact("escalated")
    elif kind == "survey.csat":
        fact("csat", score=int(body["score"]))
    elif kind == "survey.nps":
        fact("nps", score=int(body["score"]))
    elif kind == "ticket.assigned":
        _set_queue(state, body.get("queue"), at)
    elif kind == "ticket.priority_changed":
        _set_priority(state, body.get("priority"), at)
    # Self-service sessions with a ticket change nothing of the ticket.


_WAITING = ("new", "open")


def _set_status(state: TicketState, status: str, at: int) -> None:
    if at >= state.status_at_ms:
        _move_wait_clock(state, status, at)
        state.status, state.status_at_ms = status, at


def _move_wait_clock(state: TicketState, status: str, at: int) -> None:
    """Pause the requester-wait clock leaving new/open, resume it on coming back, and
    stop it for good at the first solve or close."""
    stopped = state.first_solved_at_ms is not None or state.closed_at_ms is not None
    if state.wait_since_ms is not None and status not in _WAITING:
        state.wait_ms += max(0, at - state.wait_since_ms)
        state.wait_since_ms = None
    elif state.wait_since_ms is None and status in _WAITING and state.created and not stopped:
        state.wait_since_ms = at


def _set_queue(state: TicketState, queue: str | None, at: int) -> None:
    if queue is not None and at >= state.queue_at_ms:
        state.queue, state.queue_at_ms = queue, at


def _set_priority(state: TicketState, priority: str | None, at: int) -> None:
    if priority is not None and at >= state.priority_at_ms:
        state.priority, state.priority_at_ms = priority, at


def _event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at_ms": event.occurred_at_ms,
        "body": event.body,
    }


def _event_from_dict(data: dict[str, Any]) -> Event:
    return Event(data["event_id"], data["type"], data["occurred_at_ms"], data["body"])
