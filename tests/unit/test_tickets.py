from stream.kpi.tickets import TicketState, apply_ticket_event
from tests.unit.helpers import HOUR, MINUTE, T0, agent_reply, created, ticket_event


def run(events, state=None):
    outcomes = []
    for event in events:
        outcome = apply_ticket_event(state, event, lambda q: q)
        state = outcome.state
        outcomes.append(outcome)
    return state, outcomes


def test_created_ticket_is_active_as_new() -> None:
    state, [outcome] = run([created("T1", T0, priority="high")])
    assert outcome.active_moves == [(("billing", "high", "new"), +1)]
    assert state.counted_as == ("billing", "high", "new")


def test_first_response_is_the_first_public_agent_reply() -> None:
    events = [
        created("T1", T0),
        ticket_event("ticket.replied", "T1", T0 + MINUTE, author="system", public=True),
        ticket_event("ticket.replied", "T1", T0 + 2 * MINUTE, author="customer", public=True),
        agent_reply("T1", T0 + 3 * MINUTE, public=False),  # internal note
        agent_reply("T1", T0 + 10 * MINUTE),
        agent_reply("T1", T0 + 20 * MINUTE),
    ]
    state, outcomes = run(events)
    responses = [r for o in outcomes for r in o.first_responses]
    assert [r.latency_ms for r in responses] == [10 * MINUTE]
    assert state.first_response_at_ms == T0 + 10 * MINUTE


def test_reopened_ticket_is_active_again_and_keeps_its_first_response() -> None:
    events = [
        created("T1", T0),
        agent_reply("T1", T0 + HOUR),
        ticket_event("ticket.solved", "T1", T0 + 2 * HOUR, method="agent"),
        ticket_event("ticket.reopened", "T1", T0 + 3 * HOUR),
        agent_reply("T1", T0 + 4 * HOUR),
    ]
    state, outcomes = run(events)
    assert outcomes[2].active_moves == [(("billing", "normal", "new"), -1)]
    assert outcomes[3].active_moves == [(("billing", "normal", "open"), +1)]
    assert [r.latency_ms for o in outcomes for r in o.first_responses] == [HOUR]
    assert state.first_response_at_ms == T0 + HOUR


def test_duplicate_event_id_changes_nothing() -> None:
    create = created("T1", T0)
    state, outcomes = run([create, create])
    assert outcomes[1].duplicate
    assert outcomes[1].active_moves == []
    assert state.seen_event_ids == [create.event_id]


def test_events_before_creation_are_replayed_when_it_arrives() -> None:
    reply = agent_reply("T1", T0 + 5 * MINUTE)
    pending = ticket_event("ticket.status_changed", "T1", T0 + 6 * MINUTE, status="pending")
    state, outcomes = run([reply, pending, created("T1", T0, priority="urgent")])
    assert outcomes[0].buffered
    assert outcomes[1].buffered
    assert outcomes[0].active_moves == []
    last = outcomes[2]
    assert [r.latency_ms for r in last.first_responses] == [5 * MINUTE]
    assert last.active_moves == [(("billing", "urgent", "pending"), +1)]
    assert state.early_events == []


def test_older_status_arriving_late_does_not_overwrite_newer() -> None:
    events = [
        created("T1", T0),
        ticket_event("ticket.status_changed", "T1", T0 + 2 * MINUTE, status="on_hold"),
        ticket_event("ticket.status_changed", "T1", T0 + 1 * MINUTE, status="open"),
    ]
    state, outcomes = run(events)
    assert state.status == "on_hold"
    assert outcomes[2].active_moves == []


def test_queue_move_and_priority_change_move_the_ticket_between_gauges() -> None:
    events = [
        created("T1", T0, queue="billing"),
        ticket_event("ticket.assigned", "T1", T0 + MINUTE, queue="technical"),
        ticket_event("ticket.priority_changed", "T1", T0 + 2 * MINUTE, priority="urgent"),
    ]
    _, outcomes = run(events)
    assert outcomes[1].active_moves == [
        (("billing", "normal", "new"), -1),
        (("technical", "normal", "new"), +1),
    ]
    assert outcomes[2].active_moves == [
        (("technical", "normal", "new"), -1),
        (("technical", "urgent", "new"), +1),
    ]


def test_closed_ticket_leaves_the_gauge_once() -> None:
    events = [
        created("T1", T0),
        ticket_event("ticket.solved", "T1", T0 + HOUR, method="agent"),
        ticket_event("ticket.closed", "T1", T0 + 2 * HOUR),
    ]
    _, outcomes = run(events)
    moves = [m for o in outcomes for m in o.active_moves]
    assert sum(delta for _, delta in moves) == 0


def test_reply_stamped_before_creation_counts_as_immediate() -> None:
    _, outcomes = run([created("T1", T0), agent_reply("T1", T0 - 5_000)])
    assert outcomes[1].first_responses[0].latency_ms == 0


def test_state_survives_serialisation() -> None:
    state, _ = run([created("T1", T0), agent_reply("T1", T0 + MINUTE)])
    copy = TicketState.from_dict(state.to_dict())
    assert copy == state
    outcome = apply_ticket_event(copy, agent_reply("T1", T0 + 2 * MINUTE), lambda q: q)
    assert outcome.first_responses == []


def facts(outcomes):
    return [f for o in outcomes for f in o.facts]


def test_solve_reopen_solve_close_gives_first_and_full_resolution() -> None:
    _, outcomes = run(
        [
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
        ]
    )
    kinds = [f.kind for f in facts(outcomes)]
    assert kinds == [
        "created",
        "agent_reply",
        "solved",
        "reopened",
        "agent_reply",
        "solved",
        "closed",
    ]
    solved = [f for f in facts(outcomes) if f.kind == "solved"]
    assert solved[0].seconds == 2 * 3600  # first resolution, at the first solve
    assert solved[0].touches == 1
    assert solved[1].seconds is None  # not a first resolution
    assert (solved[1].method, solved[1].amount, solved[1].currency) == ("phone", "12.50", "EUR")
    closed = [f for f in facts(outcomes) if f.kind == "closed"]
    assert closed[0].seconds == 5 * 3600  # full resolution: to the final solve
    assert all(f.complaint for f in facts(outcomes))
    assert facts(outcomes)[1].seconds == 120  # handle time of the reply


def test_surveys_and_escalations_are_facts_once() -> None:
    csat = ticket_event("survey.csat", "T1", T0 + HOUR, score=4)
    _, outcomes = run(
        [
            created("T1", T0, queue="returns"),
            ticket_event("ticket.escalated", "T1", T0 + 1, level=1),
            csat,
            csat,
            ticket_event("survey.nps", "T1", T0 + HOUR, score=9),
        ]
    )
    got = [(f.kind, f.queue, f.score) for f in facts(outcomes)]
    assert got == [
        ("created", "returns", None),
        ("escalated", "returns", None),
        ("csat", "returns", 4),
        ("nps", "returns", 9),
    ]


def test_internal_notes_and_customer_replies_are_not_touches() -> None:
    _, outcomes = run(
        [
            created("T1", T0),
            agent_reply("T1", T0 + 1, public=False),
            ticket_event("ticket.replied", "T1", T0 + 2, author="customer", public=True),
            ticket_event("ticket.solved", "T1", T0 + 3, method="automation"),
        ]
    )
    solved = [f for f in facts(outcomes) if f.kind == "solved"]
    assert solved[0].touches == 0
    assert [f.kind for f in facts(outcomes)].count("agent_reply") == 0


def test_requester_wait_pauses_in_pending_and_on_hold() -> None:
    _, outcomes = run(
        [
            created("T1", T0),  # waiting from T0
            ticket_event("ticket.status_changed", "T1", T0 + HOUR, status="pending"),  # 1 h
            ticket_event("ticket.status_changed", "T1", T0 + 5 * HOUR, status="open"),
            ticket_event("ticket.status_changed", "T1", T0 + 6 * HOUR, status="on_hold"),  # +1 h
            ticket_event("ticket.status_changed", "T1", T0 + 8 * HOUR, status="open"),
            ticket_event("ticket.solved", "T1", T0 + 9 * HOUR, method="agent"),  # +1 h
            ticket_event("ticket.reopened", "T1", T0 + 10 * HOUR),
            ticket_event("ticket.solved", "T1", T0 + 20 * HOUR, method="agent"),
        ]
    )
    solved = [f for f in facts(outcomes) if f.kind == "solved"]
    assert solved[0].wait_seconds == 3 * 3600  # of 9 h to the first solve
    assert solved[0].seconds == 9 * 3600
    assert solved[1].wait_seconds is None  # only the first solve counts
