from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from stream.kpi.partition import PartitionKpis
from stream.kpi.snapshot import build_snapshot
from stream.kpi.tickets import FirstResponse, TicketOutcome, TicketState, apply_ticket_event
from tests.unit.helpers import MINUTE, T0, agent_reply, created, ticket_event

GRACE = 10 * MINUTE


def kpis() -> PartitionKpis:
    return PartitionKpis(window_sizes_ms=(MINUTE, 60 * MINUTE), grace_ms=GRACE)


def response(at_ms: int, latency_ms: int, queue: str = "billing") -> TicketOutcome:
    outcome = TicketOutcome(state=TicketState(ticket_id="x"))
    outcome.first_responses.append(FirstResponse(queue, "normal", at_ms, latency_ms))
    return outcome


def test_window_closes_only_after_grace_in_event_time() -> None:
    part = kpis()
    part.apply(response(T0, 30_000), T0, wall_ms=0)
    assert part.close_windows(now_ms=None) == []
    part.apply(TicketOutcome(state=TicketState("y")), T0 + GRACE + MINUTE, wall_ms=0)
    closed = part.close_windows(now_ms=None)
    assert [(w.size_ms, w.start_ms) for w in closed] == [(MINUTE, T0 - T0 % MINUTE)]
    assert closed[0].sketches[("billing", "normal")].count == 1


def test_replay_is_never_closed_by_the_wall_clock() -> None:
    part = kpis()
    part.apply(response(T0, 30_000), T0, wall_ms=0)
    assert part.close_windows(now_ms=None) == []
    # Live mode: a partition idle for a grace period is advanced by the wall clock.
    assert part.close_windows(now_ms=T0 + 2 * GRACE + 61 * MINUTE) != []


def test_response_for_a_closed_window_is_late_and_not_added() -> None:
    part = kpis()
    part.apply(TicketOutcome(state=TicketState("y")), T0 + 2 * 60 * MINUTE, wall_ms=0)
    part.close_windows(now_ms=None)
    changed = part.apply(response(T0, 1000), T0, wall_ms=0)
    assert changed == set()
    assert part.late_first_responses_total == 2  # late for the 1m and the 1h window


def test_late_response_within_grace_updates_its_open_window() -> None:
    part = kpis()
    part.apply(response(T0 + 5 * MINUTE, 1000), T0 + 5 * MINUTE, wall_ms=0)
    changed = part.apply(response(T0, 2000), T0, wall_ms=0)
    assert (MINUTE, T0 - T0 % MINUTE, ("billing", "normal")) in changed
    assert part.late_first_responses_total == 0


def test_persisted_pieces_rebuild_the_same_partition() -> None:
    part = kpis()
    state = None
    for event in [created("T1", T0), agent_reply("T1", T0 + MINUTE), created("T2", T0)]:
        outcome = apply_ticket_event(
            state if event.body["ticket_id"] == "T1" else None, event, lambda q: q
        )
        if event.body["ticket_id"] == "T1":
            state = outcome.state
        part.apply(outcome, event.occurred_at_ms, wall_ms=0)
    copy = kpis()
    copy.load_summary(part.summary_dict())
    for (size, start), dims in part.open_windows.items():
        for dim in dims:
            data = part.piece_dict((size, start, dim))
            assert data is not None
            copy.load_piece((size, start, dim), data)
    assert copy.active == part.active
    assert copy.max_event_ms == part.max_event_ms
    assert copy.open_windows.keys() == part.open_windows.keys()


@given(
    st.lists(
        st.sampled_from(["new", "open", "pending", "on_hold", "solved", "closed"]), max_size=30
    )
)
def test_active_count_is_one_while_open_and_zero_after(statuses: list[str]) -> None:
    part = kpis()
    state = apply_ticket_event(None, created("T1", T0), lambda q: q)
    part.apply(state, T0, wall_ms=0)
    ticket = state.state
    for i, status in enumerate(statuses, start=1):
        outcome = apply_ticket_event(
            ticket, ticket_event("ticket.status_changed", "T1", T0 + i, status=status), lambda q: q
        )
        ticket = outcome.state
        part.apply(outcome, T0 + i, wall_ms=0)
    final = statuses[-1] if statuses else "new"
    expected = 0 if final in ("solved", "closed") else 1
    assert sum(part.active.values()) == expected
    assert all(n > 0 for n in part.active.values())


def test_snapshot_merges_partitions_on_the_common_closed_window() -> None:
    start = T0 - T0 % MINUTE
    a, b = kpis(), kpis()
    a.apply(response(start, 10_000, "billing"), start, wall_ms=0)
    b.apply(response(start + 1, 20_000, "technical"), start + 1, wall_ms=0)
    # Partition a has closed [start, start+1m) and the minute after; b only the first.
    a.apply(TicketOutcome(state=TicketState("z")), start + 2 * MINUTE + GRACE, wall_ms=0)
    b.apply(TicketOutcome(state=TicketState("z")), start + MINUTE + GRACE, wall_ms=0)
    a.close_windows(now_ms=None)
    b.close_windows(now_ms=None)
    snap = build_snapshot({0: a, 1: b}, now_ms=None)
    minute = snap.first_response_windows[MINUTE]
    assert minute.start_ms == start
    assert minute.overall.count == 2
    assert set(minute.by_dims) == {("billing", "normal"), ("technical", "normal")}
    assert minute.overall.quantile(1.0) == __import__("pytest").approx(20.0, rel=0.01)
    assert snap.active == dict(Counter())
