"""A ticket is the set of its events; `derive` turns that set into its contributions to the
windows, its running SLA clocks and its place in the active-issues gauge (docs/kpis.md)."""

from __future__ import annotations

import orjson

from stream.kpi.contrib import Contribution, Dims, diff
from stream.kpi.events import Event
from stream.kpi.sla import SlaPolicy
from stream.kpi.tickets import (
    MAX_TICKET_EVENTS,
    TicketState,
    TicketView,
    add_event,
    derive,
)
from tests.unit.helpers import (
    HOUR,
    MINUTE,
    T0,
    agent_reply,
    created,
    same_queue,
    status_changed,
    ticket_event,
)

BILLING: Dims = ("billing", "normal")

Fact = tuple[int, Dims, float]  # (at_ms, dims, value)
Move = tuple[int, Dims, str, float]  # (at_ms, dims, status, +1/-1)


def ticket(*events: Event) -> TicketState:
    state = TicketState("T1")
    for event in events:
        assert add_event(state, event) is None
    return state


def view(state: TicketState) -> TicketView:
    return derive(state, SlaPolicy(), same_queue)


def facts(v: TicketView, name: str) -> list[Fact]:
    """The contributions of one name, in event-time order."""
    return sorted((c.at_ms, c.dims, c.value) for c in v.contributions if c.name == name)


def changes_of(changes: list[tuple[Contribution, int]], name: str) -> list[Fact]:
    """What a diff does to one name: each contribution's value times its sign."""
    return sorted((c.at_ms, c.dims, c.value * sign) for c, sign in changes if c.name == name)


def active_moves(contributions: list[tuple[Contribution, int]]) -> list[Move]:
    return sorted(
        (c.at_ms, c.dims, c.name.removeprefix("active:"), c.value * sign)
        for c, sign in contributions
        if c.name.startswith("active:")
    )


def moves_of(v: TicketView) -> list[Move]:
    return active_moves([(c, 1) for c in v.contributions])


def active_at(v: TicketView, at_ms: int) -> dict[tuple[str, str, str], float]:
    """Where the windows count the ticket as active at `at_ms` (moves before it)."""
    total: dict[tuple[str, str, str], float] = {}
    for t, (queue, priority), status, value in moves_of(v):
        if t < at_ms:
            where = (queue, priority, status)
            total[where] = total.get(where, 0) + value
    return {key: n for key, n in total.items() if n}


def test_created_ticket_is_active_as_new() -> None:
    v = view(ticket(created("T1", T0, priority="high")))
    assert v.active_key == ("billing", "high", "new")
    assert v.created_at_ms == T0
    assert facts(v, "created") == [(T0, ("billing", "high"), 1)]
    assert moves_of(v) == [(T0, ("billing", "high"), "new", 1)]


def test_first_response_is_the_first_public_agent_reply() -> None:
    v = view(
        ticket(
            created("T1", T0),
            ticket_event("ticket.replied", "T1", T0 + MINUTE, author="system", public=True),
            ticket_event("ticket.replied", "T1", T0 + 2 * MINUTE, author="customer", public=True),
            agent_reply("T1", T0 + 3 * MINUTE, public=False),  # internal note
            agent_reply("T1", T0 + 10 * MINUTE),
            agent_reply("T1", T0 + 20 * MINUTE),
        )
    )
    assert facts(v, "first_response_seconds") == [(T0 + 10 * MINUTE, BILLING, 600.0)]
    assert facts(v, "agent_replies") == [
        (T0 + 10 * MINUTE, BILLING, 1),
        (T0 + 20 * MINUTE, BILLING, 1),
    ]


def test_reopened_ticket_is_active_again_and_keeps_its_first_response() -> None:
    v = view(
        ticket(
            created("T1", T0),
            agent_reply("T1", T0 + HOUR),
            ticket_event("ticket.solved", "T1", T0 + 2 * HOUR, method="agent"),
            ticket_event("ticket.reopened", "T1", T0 + 3 * HOUR),
            agent_reply("T1", T0 + 4 * HOUR),
        )
    )
    assert moves_of(v) == [
        (T0, BILLING, "new", 1),
        (T0 + 2 * HOUR, BILLING, "new", -1),
        (T0 + 3 * HOUR, BILLING, "open", 1),
    ]
    assert v.active_key == ("billing", "normal", "open")
    assert facts(v, "first_response_seconds") == [(T0 + HOUR, BILLING, 3600.0)]


def test_duplicate_event_id_is_refused_and_changes_nothing() -> None:
    create = created("T1", T0)
    state = ticket(create)
    before = view(state)
    assert add_event(state, create) == "duplicate"
    # The id alone decides: another event under the same id is a re-delivery too.
    same_id = ticket_event("ticket.closed", "T1", T0 + MINUTE, event_id=create.event_id)
    assert add_event(state, same_id) == "duplicate"
    assert state.ids == [create.event_id]
    assert diff(before.contributions, view(state).contributions) == []
    assert view(state).active_key == ("billing", "normal", "new")


def test_events_beyond_the_cap_of_a_runaway_ticket_are_refused() -> None:
    state = ticket(created("T1", T0))
    for i in range(1, MAX_TICKET_EVENTS):
        assert add_event(state, agent_reply("T1", T0 + i)) is None
    assert add_event(state, agent_reply("T1", T0 + MAX_TICKET_EVENTS)) == "full"
    assert len(state.events) == MAX_TICKET_EVENTS


def test_events_arriving_before_the_creation_count_once_it_arrives() -> None:
    state = ticket(
        agent_reply("T1", T0 + 5 * MINUTE),
        status_changed("T1", T0 + 6 * MINUTE, "pending"),
    )
    waiting = view(state)
    # No ticket yet: nothing is counted, no clock runs, it is not active.
    assert waiting.contributions == []
    assert waiting.clocks == []
    assert waiting.active_key is None
    assert add_event(state, created("T1", T0, priority="urgent")) is None
    v = view(state)
    urgent: Dims = ("billing", "urgent")
    assert facts(v, "first_response_seconds") == [(T0 + 5 * MINUTE, urgent, 300.0)]
    assert facts(v, "sla:first_response:met") == [(T0 + 5 * MINUTE, urgent, 1)]
    assert v.active_key == ("billing", "urgent", "pending")
    assert moves_of(v) == [
        (T0, urgent, "new", 1),
        (T0 + 6 * MINUTE, urgent, "new", -1),
        (T0 + 6 * MINUTE, urgent, "pending", 1),
    ]


def test_events_stamped_before_the_creation_count_in_its_dims_but_do_not_set_its_state() -> None:
    v = view(
        ticket(
            ticket_event("ticket.assigned", "T1", T0 - 3 * MINUTE, queue="technical"),
            status_changed("T1", T0 - 2 * MINUTE, "pending"),
            ticket_event("ticket.escalated", "T1", T0 - MINUTE, level=1),
            created("T1", T0, queue="billing"),
        )
    )
    assert v.active_key == ("billing", "normal", "new")
    assert facts(v, "escalated") == [(T0 - MINUTE, BILLING, 1)]
    assert moves_of(v) == [(T0, BILLING, "new", 1)]


def test_older_status_arriving_late_does_not_overwrite_newer() -> None:
    state = ticket(created("T1", T0), status_changed("T1", T0 + 2 * MINUTE, "on_hold"))
    before = view(state)
    assert add_event(state, status_changed("T1", T0 + MINUTE, "open")) is None
    after = view(state)
    # Event order decides: the ticket is on hold now, whatever arrived last ...
    assert after.status == "on_hold"
    assert after.active_key == before.active_key == ("billing", "normal", "on_hold")
    # ... and the windows learn that it was open in between.
    assert active_at(before, T0 + 90_000) == {("billing", "normal", "new"): 1}
    assert active_at(after, T0 + 90_000) == {("billing", "normal", "open"): 1}
    assert active_at(after, T0 + 3 * MINUTE) == {("billing", "normal", "on_hold"): 1}


def test_queue_move_and_priority_change_move_the_ticket_between_gauges() -> None:
    state = ticket(created("T1", T0, queue="billing"))
    v0 = view(state)
    add_event(state, ticket_event("ticket.assigned", "T1", T0 + MINUTE, queue="technical"))
    v1 = view(state)
    assert v1.active_key == ("technical", "normal", "new")
    assert active_moves(diff(v0.contributions, v1.contributions)) == [
        (T0 + MINUTE, ("billing", "normal"), "new", -1),
        (T0 + MINUTE, ("technical", "normal"), "new", 1),
    ]
    add_event(
        state, ticket_event("ticket.priority_changed", "T1", T0 + 2 * MINUTE, priority="urgent")
    )
    v2 = view(state)
    assert v2.active_key == ("technical", "urgent", "new")
    assert active_moves(diff(v1.contributions, v2.contributions)) == [
        (T0 + 2 * MINUTE, ("technical", "normal"), "new", -1),
        (T0 + 2 * MINUTE, ("technical", "urgent"), "new", 1),
    ]
    # What happens next counts where the ticket is now.
    add_event(state, agent_reply("T1", T0 + 3 * MINUTE))
    assert facts(view(state), "agent_replies") == [(T0 + 3 * MINUTE, ("technical", "urgent"), 1)]


def test_closed_ticket_leaves_the_gauge_once() -> None:
    v = view(
        ticket(
            created("T1", T0),
            ticket_event("ticket.solved", "T1", T0 + HOUR, method="agent"),
            ticket_event("ticket.closed", "T1", T0 + 2 * HOUR),
        )
    )
    assert v.active_key is None
    assert v.status == "closed"
    assert moves_of(v) == [(T0, BILLING, "new", 1), (T0 + HOUR, BILLING, "new", -1)]
    assert active_at(v, T0 + 3 * HOUR) == {}


def test_reply_stamped_before_creation_counts_as_immediate() -> None:
    v = view(ticket(created("T1", T0), agent_reply("T1", T0 - 5_000)))
    assert facts(v, "first_response_seconds") == [(T0 - 5_000, BILLING, 0.0)]


def test_state_survives_serialisation() -> None:
    reply = agent_reply("T1", T0 + MINUTE, handle_seconds=30)
    state = ticket(
        created("T1", T0, subject_kind="complaint"),
        reply,
        ticket_event(
            "ticket.solved",
            "T1",
            T0 + HOUR,
            method="phone",
            settled_amount={"value": "12.50", "currency": "EUR"},
        ),
    )
    state.breached.append("resolution")
    state.live.extend(["c", "fr"])
    state.counted_as = ("billing", "normal", "new")
    # The tickets table stores JSON.
    copy = TicketState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert copy == state
    assert view(copy) == view(state)
    # The ids came along: a re-delivery is still a duplicate ...
    assert add_event(copy, reply) == "duplicate"
    # ... and the first response is still the one from before.
    before = view(copy)
    add_event(copy, agent_reply("T1", T0 + 2 * MINUTE))
    assert (
        changes_of(diff(before.contributions, view(copy).contributions), "first_response_seconds")
        == []
    )


def test_solve_reopen_solve_close_gives_first_and_full_resolution() -> None:
    v = view(
        ticket(
            created("T1", T0, subject_kind="complaint"),
            agent_reply("T1", T0 + HOUR, handle_seconds=120),
            ticket_event("ticket.solved", "T1", T0 + 2 * HOUR, method="agent"),
            ticket_event("ticket.reopened", "T1", T0 + 3 * HOUR),
            agent_reply("T1", T0 + 4 * HOUR),
            ticket_event(
                "ticket.solved",
                "T1",
                T0 + 5 * HOUR,
                method="phone",
                settled_amount={"value": "12.50", "currency": "EUR"},
            ),
            ticket_event("ticket.closed", "T1", T0 + 9 * HOUR),
        )
    )
    at = {h: T0 + h * HOUR for h in range(10)}
    assert facts(v, "created") == [(T0, BILLING, 1)]
    assert facts(v, "created_complaint") == [(T0, BILLING, 1)]
    assert facts(v, "agent_replies") == [(at[1], BILLING, 1), (at[4], BILLING, 1)]
    assert facts(v, "handle_seconds") == [(at[1], BILLING, 120.0)]
    assert facts(v, "solved:agent") == [(at[2], BILLING, 1)]
    assert facts(v, "solved:phone") == [(at[5], BILLING, 1)]
    assert facts(v, "settled:EUR") == [(at[5], BILLING, 12.5)]
    assert facts(v, "settled_solves:EUR") == [(at[5], BILLING, 1)]
    assert facts(v, "reopened") == [(at[3], BILLING, 1)]
    # First resolution, at the first solve only, with the touches before it.
    assert facts(v, "resolution_seconds") == [(at[2], BILLING, 2 * 3600.0)]
    assert facts(v, "first_solves") == [(at[2], BILLING, 1)]
    assert facts(v, "touches") == [(at[2], BILLING, 1)]
    assert facts(v, "one_touch") == [(at[2], BILLING, 1)]
    # Full resolution, at the close: to the last solve before it.
    assert facts(v, "full_resolution_seconds") == [(at[9], BILLING, 5 * 3600.0)]
    # Agent work: new 0-2 h and open 3-5 h; solved pauses it.
    assert facts(v, "agent_work_seconds") == [(at[9], BILLING, 4 * 3600.0)]


def test_surveys_and_escalations_count_once_in_their_dims() -> None:
    csat = ticket_event("survey.csat", "T1", T0 + HOUR, score=4)
    state = ticket(
        created("T1", T0, queue="returns"),
        ticket_event("ticket.escalated", "T1", T0 + 1, level=1),
        csat,
    )
    assert add_event(state, csat) == "duplicate"
    add_event(state, ticket_event("survey.nps", "T1", T0 + HOUR, score=9))
    v = view(state)
    returns: Dims = ("returns", "normal")
    assert facts(v, "escalated") == [(T0 + 1, returns, 1)]
    assert facts(v, "escalated_complaint") == []  # not a complaint
    assert facts(v, "csat:4") == [(T0 + HOUR, returns, 1)]
    assert facts(v, "nps:promoter") == [(T0 + HOUR, returns, 1)]
    assert {c.name for c in v.contributions} == {
        "created",
        "active:new",
        "escalated",
        "csat:4",
        "nps:promoter",
    }


def test_escalation_of_a_complaint_counts_as_a_complaint_escalation() -> None:
    v = view(
        ticket(
            created("T1", T0, subject_kind="complaint"),
            ticket_event("ticket.escalated", "T1", T0 + MINUTE, level=1),
        )
    )
    assert facts(v, "escalated") == [(T0 + MINUTE, BILLING, 1)]
    assert facts(v, "escalated_complaint") == [(T0 + MINUTE, BILLING, 1)]


def test_internal_notes_and_customer_replies_are_not_touches() -> None:
    v = view(
        ticket(
            created("T1", T0),
            agent_reply("T1", T0 + 1, public=False),
            ticket_event("ticket.replied", "T1", T0 + 2, author="customer", public=True),
            ticket_event("ticket.solved", "T1", T0 + 3, method="automation"),
        )
    )
    assert facts(v, "touches") == [(T0 + 3, BILLING, 0)]
    assert facts(v, "one_touch") == []
    assert facts(v, "agent_replies") == []
    assert facts(v, "first_response_seconds") == []


def test_requester_wait_pauses_in_pending_and_on_hold() -> None:
    v = view(
        ticket(
            created("T1", T0),  # waiting from T0
            status_changed("T1", T0 + HOUR, "pending"),  # 1 h
            status_changed("T1", T0 + 5 * HOUR, "open"),
            status_changed("T1", T0 + 6 * HOUR, "on_hold"),  # +1 h
            status_changed("T1", T0 + 8 * HOUR, "open"),
            ticket_event("ticket.solved", "T1", T0 + 9 * HOUR, method="agent"),  # +1 h
            ticket_event("ticket.reopened", "T1", T0 + 10 * HOUR),
            ticket_event("ticket.solved", "T1", T0 + 20 * HOUR, method="agent"),
        )
    )
    # Of 9 h to the first solve, 3 h waiting; the second solve adds nothing.
    assert facts(v, "requester_wait_seconds") == [(T0 + 9 * HOUR, BILLING, 3 * 3600.0)]
    assert facts(v, "resolution_seconds") == [(T0 + 9 * HOUR, BILLING, 9 * 3600.0)]


def test_late_reply_earlier_than_the_first_replaces_the_first_response() -> None:
    state = ticket(created("T1", T0), agent_reply("T1", T0 + 10 * MINUTE))
    before = view(state)
    add_event(state, agent_reply("T1", T0 + 5 * MINUTE))
    changes = diff(before.contributions, view(state).contributions)
    assert changes_of(changes, "first_response_seconds") == [
        (T0 + 5 * MINUTE, BILLING, 300.0),
        (T0 + 10 * MINUTE, BILLING, -600.0),
    ]
    # Both replies are agent replies; only the new one is added.
    assert changes_of(changes, "agent_replies") == [(T0 + 5 * MINUTE, BILLING, 1)]


def test_late_assignment_before_the_reply_moves_the_first_response_dims() -> None:
    state = ticket(created("T1", T0, queue="billing"), agent_reply("T1", T0 + 10 * MINUTE))
    before = view(state)
    add_event(state, ticket_event("ticket.assigned", "T1", T0 + 5 * MINUTE, queue="technical"))
    changes = diff(before.contributions, view(state).contributions)
    technical: Dims = ("technical", "normal")
    assert changes_of(changes, "first_response_seconds") == [
        (T0 + 10 * MINUTE, BILLING, -600.0),
        (T0 + 10 * MINUTE, technical, 600.0),
    ]
    assert changes_of(changes, "sla:first_response:met") == [
        (T0 + 10 * MINUTE, BILLING, -1),
        (T0 + 10 * MINUTE, technical, 1),
    ]


def test_a_second_creation_with_another_id_changes_nothing() -> None:
    state = ticket(created("T1", T0, queue="billing"), agent_reply("T1", T0 + MINUTE))
    before = view(state)
    add_event(state, created("T1", T0 + 2 * MINUTE, queue="technical", priority="urgent"))
    after = view(state)
    assert diff(before.contributions, after.contributions) == []
    assert after.active_key == before.active_key == ("billing", "normal", "new")
