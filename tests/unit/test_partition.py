"""One partition's event-time windows: contributions in, partials out (closed by event
time, re-sent on a late change, final after the grace period), and rebuilt from tickets."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.kpi.contrib import Contribution, Dims, diff
from stream.kpi.events import Event
from stream.kpi.merge import WindowMerger
from stream.kpi.partition import PartitionKpis, parse_dims_key
from stream.kpi.sketch import QuantileSketch
from stream.kpi.sla import SlaPolicy
from stream.kpi.snapshot import build_snapshot
from stream.kpi.tickets import TicketState, add_event, derive
from stream.kpi.timefmt import format_rfc3339_ms
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

GRACE = 10 * MINUTE
START = T0 - T0 % MINUTE  # the minute window of T0 (10:15)
HOUR_START = T0 - T0 % HOUR  # its hour window (10:00)
BILLING: Dims = ("billing", "normal")
ACTIVE = ("new", "open", "pending", "on_hold")

WindowKey = tuple[int, int, str]  # (size_ms, start_ms, dims key)


def kpis() -> PartitionKpis:
    return PartitionKpis(window_sizes_ms=(MINUTE, HOUR), grace_ms=GRACE)


def fr(at_ms: int, seconds: float, queue: str = "billing") -> Contribution:
    return Contribution(at_ms, (queue, "normal"), "first_response_seconds", seconds, "fr")


def where(p: dict[str, Any]) -> tuple[int, int, bool]:
    return (p["size_ms"], p["start_ms"], p["final"])


def responses(p: dict[str, Any]) -> QuantileSketch:
    return QuantileSketch.from_dict(p["sketches"]["first_response_seconds"])


def of_responses(partials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The partials that carry first responses."""
    return [p for p in partials if "first_response_seconds" in p["sketches"]]


def key(p: dict[str, Any]) -> WindowKey:
    return (p["size_ms"], p["start_ms"], p["dims"])


def content(p: dict[str, Any]) -> dict[str, Any]:
    """What a partial says, without what a zero count or an empty sketch would add: the
    KPI values of a window are the same with or without them."""
    out: dict[str, Any] = {}
    for name, value in p.items():
        if name in ("size_ms", "start_ms", "partition", "dims", "final"):
            continue
        if name == "sketches":
            value = {k: s for k, s in value.items() if s["k"] or s["z"]}
        elif isinstance(value, dict):
            value = {k: v for k, v in value.items() if v}
        out[name] = value
    return out


def said(partials: list[dict[str, Any]]) -> dict[WindowKey, dict[str, Any]]:
    """The latest content per window and dimension set, as the merge keeps them."""
    out: dict[WindowKey, dict[str, Any]] = {}
    for p in partials:
        out[key(p)] = content(p)
    return {k: c for k, c in out.items() if any(c.values())}


def spoken(partials: list[dict[str, Any]]) -> list[tuple[WindowKey, bool, dict[str, Any]]]:
    """The partials in the order sent, those that say something."""
    out = []
    for p in partials:
        c = content(p)
        if any(c.values()):
            out.append((key(p), p["final"], c))
    return out


class Fed:
    """A partition fed the way the runtime feeds it: each event goes into its ticket, and
    the change of the ticket's contributions goes into the windows."""

    def __init__(self, tickets: dict[str, TicketState] | None = None) -> None:
        self.kpis = kpis()
        self.tickets = tickets if tickets is not None else {}

    def feed(self, *events: Event) -> None:
        for event in events:
            ticket_id = event.body["ticket_id"]
            state = self.tickets.setdefault(ticket_id, TicketState(ticket_id))
            before = derive(state, SlaPolicy(), same_queue)
            assert add_event(state, event) is None
            self.kpis.observe(event.occurred_at_ms, wall_ms=0)
            after = derive(state, SlaPolicy(), same_queue)
            self.kpis.apply(diff(before.contributions, after.contributions))

    def close(self) -> list[dict[str, Any]]:
        return self.kpis.close(0, now_ms=None)

    def restarted(self) -> Fed:
        """A new worker: the same tickets table and marks, windows rebuilt from them."""
        tickets = {t: TicketState.from_dict(s.to_dict()) for t, s in self.tickets.items()}
        copy = Fed(tickets)
        copy.kpis.load_summary(self.kpis.summary_dict())
        copy.kpis.rebuild(
            c for s in tickets.values() for c in derive(s, SlaPolicy(), same_queue).contributions
        )
        return copy


def test_window_closes_in_event_time_and_is_final_only_after_grace() -> None:
    part = kpis()
    part.observe(T0, wall_ms=0)
    part.apply([(fr(T0, 30.0), 1)])
    assert part.close(0, now_ms=None) == []
    # The partition's event time passes the minute's end: closed, sent, not final.
    part.observe(START + MINUTE, wall_ms=0)
    [closed] = of_responses(part.close(0, now_ms=None))
    assert where(closed) == (MINUTE, START, False)
    assert closed["dims"] == "billing\x1fnormal"
    assert responses(closed).count == 1
    part.observe(START + MINUTE + GRACE - 1, wall_ms=0)
    assert part.close(0, now_ms=None) == []  # unchanged, and still within grace
    # The watermark (event time - grace) passes it: sent a last time, final.
    part.observe(START + MINUTE + GRACE, wall_ms=0)
    [final] = of_responses(part.close(0, now_ms=None))
    assert where(final) == (MINUTE, START, True)
    assert responses(final).count == 1
    assert part.close(0, now_ms=None) == []


def test_replay_is_never_closed_by_the_wall_clock() -> None:
    part = kpis()
    part.observe(T0, wall_ms=T0)
    part.apply([(fr(T0, 30.0), 1)])
    # A replay passes no wall clock: only event time closes windows.
    assert part.close(0, now_ms=None) == []
    assert part.watermark_ms(None) == T0 - GRACE


def test_live_mode_closes_an_idle_partition_by_the_wall_clock() -> None:
    part = kpis()
    part.observe(T0, wall_ms=T0)
    part.apply([(fr(T0, 30.0), 1)])
    assert part.close(0, now_ms=T0 + GRACE - 1) == []  # not idle for a grace period yet
    idle = of_responses(part.close(0, now_ms=T0 + GRACE + HOUR))
    assert [where(p) for p in idle] == [(MINUTE, START, True), (HOUR, HOUR_START, True)]
    assert all(responses(p).count == 1 for p in idle)


def test_a_rebuilt_partition_makes_nothing_final_until_it_has_read_its_records_again() -> None:
    part = kpis()
    part.observe(T0, wall_ms=0)
    part.close(0, now_ms=None)
    part.observe(T0 + HOUR, wall_ms=0)  # the tables know an event an hour later
    part.final_through_ms = T0 - GRACE  # the last final mark persisted
    part.hold_event_time()
    # No time: nothing is closed or made final, no clock runs out.
    assert part.watermark_ms(None) is None
    assert part.close(0, now_ms=None) == []
    # Events read again move it on, as they did the first time.
    part.observe(T0 + 5 * MINUTE, wall_ms=0)
    assert part.watermark_ms(None) == T0 + 5 * MINUTE - GRACE
    # Read again up to where it was: the newest known time comes back.
    part.release_event_time()
    assert part.max_event_ms == T0 + HOUR
    assert part.held_max_event_ms is None


def test_a_partition_without_a_final_mark_holds_nothing() -> None:
    part = kpis()
    part.max_event_ms = T0  # tickets, but no mark persisted yet
    part.hold_event_time()
    assert part.max_event_ms == T0
    assert part.held_max_event_ms is None


def test_contribution_for_a_final_window_is_late_and_not_added() -> None:
    part = kpis()
    part.observe(T0, wall_ms=0)
    part.apply([(fr(T0, 10.0), 1)])
    part.observe(T0 + 2 * HOUR, wall_ms=0)
    assert [where(p) for p in of_responses(part.close(0, now_ms=None))] == [
        (MINUTE, START, True),
        (HOUR, HOUR_START, True),
    ]
    assert part.apply([(fr(T0, 1.0), 1)]) == 1
    assert part.late_total == 1
    assert part.late == {"first_response_seconds": 1}
    assert part.close(0, now_ms=None) == []  # final windows do not change


def test_late_for_the_final_minute_still_counts_in_its_open_hour() -> None:
    part = kpis()
    part.observe(T0, wall_ms=0)
    part.observe(T0 + 15 * MINUTE, wall_ms=0)  # the watermark passes 10:16, not 11:00
    part.close(0, now_ms=None)
    assert part.apply([(fr(T0, 5.0), 1)]) == 1
    part.observe(T0 + 2 * HOUR, wall_ms=0)
    assert [(where(p), responses(p).count) for p in of_responses(part.close(0, None))] == [
        ((HOUR, HOUR_START, True), 1)
    ]


def test_late_within_grace_updates_a_closed_window_and_close_sends_it_again() -> None:
    part = kpis()
    part.observe(T0, wall_ms=0)
    part.apply([(fr(T0, 600.0), 1)])
    part.observe(T0 + 5 * MINUTE, wall_ms=0)
    [first] = of_responses(part.close(0, now_ms=None))
    assert where(first) == (MINUTE, START, False)
    # An earlier reply turns up: the first response is taken back and added anew.
    assert part.apply([(fr(T0, 600.0), -1), (fr(T0 + 1, 300.0), 1)]) == 0
    [again] = of_responses(part.close(0, now_ms=None))
    assert where(again) == (MINUTE, START, False)
    assert (responses(again).count, responses(again).sum) == (1, 300.0)
    assert part.late_total == 0
    assert part.close(0, now_ms=None) == []  # sent once per change


def test_rebuild_from_tickets_gives_the_same_partials_as_the_incremental_path() -> None:
    live = Fed()
    sent = []
    live.feed(
        created("T1", T0, priority="urgent"),
        created("T2", T0 + 30_000),
        agent_reply("T1", T0 + 3 * MINUTE),
        ticket_event("ticket.assigned", "T1", T0 + 2 * MINUTE, queue="technical"),  # late
        created("T3", T0 + 8 * MINUTE),
    )
    sent += live.close()
    live.feed(
        status_changed("T2", T0 + 6 * MINUTE, "pending"),  # late, within grace
        agent_reply("T2", T0 + 9 * MINUTE),
        created("T4", T0 + 14 * MINUTE),
    )
    sent += live.close()
    assert any(p["final"] for p in sent)  # the oldest windows are final already

    restarted = live.restarted()
    # After the restart every closed window that is not final is sent again, saying
    # exactly what the partition had said about it last.
    reset, *resent = restarted.close()
    # First it tells the merge to forget what it said of the windows that are not final.
    assert reset == {"partition": 0, "reset_from_ms": live.kpis.final_through_ms}
    assert resent
    assert not any(p["final"] for p in resent)
    still_open = {
        k: c for k, c in said(sent).items() if k[1] >= (live.kpis.next_start_ms(k[0]) or 0)
    }
    assert said(resent) == still_open

    # From then on both take the same events and send the same partials.
    later = [
        agent_reply("T2", T0 + 5 * MINUTE),  # earlier than T2's first response
        ticket_event(
            "ticket.solved",
            "T1",
            T0 + 12 * MINUTE,
            method="agent",
            settled_amount={"value": "9.90", "currency": "EUR"},
        ),
        ticket_event("survey.csat", "T1", T0 + 13 * MINUTE, score=5),
        created("T5", T0 + 30 * MINUTE),
    ]
    ending = [ticket_event("ticket.closed", "T1", T0 + 25 * MINUTE), created("T6", T0 + 2 * HOUR)]
    outputs = []
    for part in (live, restarted):
        part.feed(*later)
        out = part.close()
        part.feed(*ending)
        out += part.close()
        outputs.append(spoken(out))
    assert outputs[0] == outputs[1]
    assert any(final for _, final, _ in outputs[0])


def active_at_end(partials: list[dict[str, Any]], start_ms: int) -> Counter[str]:
    """Active tickets by status at the end of the minute window `start_ms`, from the
    partials: those of the window, or of the latest window before it that had any (a
    window with no change in it need not say again what has not changed)."""
    said = [p for p in partials if p["size_ms"] == MINUTE and p["start_ms"] <= start_ms]
    if not said:
        return Counter()
    latest = max(p["start_ms"] for p in said)
    counts: Counter[str] = Counter()
    for p in said:
        if p["start_ms"] == latest:
            counts.update({s: int(n) for s, n in p["active_end"].items() if n})
    return counts


@given(
    st.lists(
        st.sampled_from(["new", "open", "pending", "on_hold", "solved", "closed"]), max_size=30
    ).flatmap(lambda s: st.tuples(st.just(s), st.permutations(range(len(s) + 1))))
)
def test_active_counts_at_window_end_follow_the_tickets_statuses(
    case: tuple[list[str], list[int]],
) -> None:
    statuses, arrival = case
    step = 15_000  # every status within grace of the newest: none arrives too late
    events = [created("T1", T0)] + [
        status_changed("T1", T0 + i * step, s) for i, s in enumerate(statuses, start=1)
    ]
    part = Fed()
    sent: list[dict[str, Any]] = []
    for i in arrival:  # in any order
        part.feed(events[i])
        sent += part.close()
    part.feed(created("T9", T0 + 2 * HOUR, queue="elsewhere"))  # every window final
    final = [p for p in part.close() if p["final"] and parse_dims_key(p["dims"]) == BILLING]

    def status_at(end_ms: int) -> str:
        """The ticket's status by its events before `end_ms`, in event time."""
        before = [s for i, s in enumerate(statuses, start=1) if T0 + i * step < end_ms]
        return before[-1] if before else "new"

    for start in range(START, START + 12 * MINUTE, MINUTE):
        status = status_at(start + MINUTE)
        expected = Counter({status: 1}) if status in ACTIVE else Counter()
        assert active_at_end(final, start) == expected, (start, status)
    last = statuses[-1] if statuses else "new"
    view = derive(part.tickets["T1"], SlaPolicy(), same_queue)
    assert view.active_key == (("billing", "normal", last) if last in ACTIVE else None)


def test_snapshot_merges_partitions_on_the_common_final_window() -> None:
    a, b = kpis(), kpis()
    a.observe(START, wall_ms=0)
    a.apply([(fr(START, 10.0, "billing"), 1)])
    b.observe(START + 1, wall_ms=0)
    b.apply([(fr(START + 1, 20.0, "technical"), 1)])
    # Partition a has made [start, start+1m) and the minute after final; b only the first.
    a.observe(START + 2 * MINUTE + GRACE, wall_ms=0)
    b.observe(START + MINUTE + GRACE, wall_ms=0)
    a.close(0, now_ms=None)
    b.close(1, now_ms=None)
    # The live gauge of each partition (kept by the runtime) adds up.
    a.active[("billing", "normal", "new")] = 2
    b.active[("billing", "normal", "new")] = 1
    b.active[("technical", "normal", "open")] = 1
    snap = build_snapshot({0: a, 1: b}, now_ms=None)
    minute = snap.first_response_windows[MINUTE]
    assert minute.start_ms == START
    assert minute.overall.count == 2
    assert set(minute.by_dims) == {("billing", "normal"), ("technical", "normal")}
    assert minute.overall.quantile(1.0) == pytest.approx(20.0, rel=0.01)
    assert snap.active == {
        ("billing", "normal", "new"): 3,
        ("technical", "normal", "open"): 1,
    }
    assert snap.watermarks_ms == {0: START + 2 * MINUTE, 1: START + MINUTE}


def test_restart_between_a_change_and_its_send_leaves_no_stale_partial() -> None:
    def first_responses(restart: bool) -> dict[str, int]:
        part = Fed()
        merger = WindowMerger(1, format_rfc3339_ms)
        table: dict[str, Any] = {}
        out: dict[str, Any] = {}

        def tick() -> None:
            kpis = part.kpis
            mark = {"partition": 0, "event_ms": kpis.event_mark_ms(None)}
            mark["watermark"] = kpis.watermark_ms(None)
            for message in [*part.close(), mark]:
                out.update(merger.step(message, table, emitted_at_ms=0))

        part.feed(
            created("T1", T0),
            ticket_event("ticket.solved", "T1", T0 + 30_000, method="agent"),
            agent_reply("T1", T0 + 10 * MINUTE),  # 10:25, in billing
            created("T2", T0 + 12 * MINUTE, queue="other"),
        )
        tick()
        # A late assignment moves the reply to technical; the worker restarts (or the
        # partition moves) before its next tick sends the change.
        part.feed(ticket_event("ticket.assigned", "T1", T0 + 5 * MINUTE, queue="technical"))
        if restart:
            part = part.restarted()
        part.feed(created("T3", T0 + 3 * HOUR, queue="other"))
        tick()
        return {
            k.split("|")[1]: body["values"]["count"]
            for k, body in out.items()
            if body is not None and k.startswith("first_response_time/1m|")
        }

    expected = {"queue=technical,priority=normal": 1, "all": 1}
    assert first_responses(restart=False) == expected
    assert first_responses(restart=True) == expected


def _counter_diff(
    before: list[Contribution], after: list[Contribution]
) -> list[tuple[Contribution, int]]:
    """diff as it was written with Counter: the order the windows add their floats in."""
    change: Counter[Contribution] = Counter(after)
    change.subtract(Counter(before))
    out: list[tuple[Contribution, int]] = []
    for item, n in change.items():
        if n:
            out.extend((item, 1 if n > 0 else -1) for _ in range(abs(n)))
    return out


_FACTS = st.lists(
    st.builds(
        Contribution,
        st.integers(0, 3),
        st.sampled_from([("q", "normal"), ("r", "high")]),
        st.sampled_from(["created", "active:new", "handle_seconds"]),
        st.sampled_from([1, 1.0, -1, 2.5]),
        st.sampled_from(["a", "#1"]),
    ),
    max_size=12,
)


@given(_FACTS, _FACTS)
def test_diff_takes_back_and_adds_in_the_order_of_the_multiset_difference(
    before: list[Contribution], after: list[Contribution]
) -> None:
    assert diff(before, after) == _counter_diff(before, after)
