"""The whole per-message path (decode, dedupe, state machine, aggregates, metrics) with
plain dicts standing in for the Faust tables."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream.runtime import WorkerRuntime
from stream.settings import Settings
from tests.scrape import Samples
from tests.scrape import scrape as scrape_registry
from tests.unit.helpers import MINUTE, T0, agent_reply, created, ticket_event


def raw(event: Any) -> bytes:
    return orjson.dumps(event.body)


@pytest.fixture
def runtime() -> WorkerRuntime:
    settings = Settings(
        max_future="off", live=False, windows=("1m", "1h"), grace="10m", max_queues=2
    )
    return WorkerRuntime(settings, CollectorRegistry())


def scrape(runtime: WorkerRuntime) -> Samples:
    return scrape_registry(runtime.registry)


def test_stream_through_runtime_updates_gauges_and_histogram(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    first = created("T1", T0, priority="urgent")
    for event in [first, first, agent_reply("T1", T0 + MINUTE)]:
        runtime.process_helpdesk(raw(event), 0, tickets, scopes, now_ms=0)
    result = runtime.process_helpdesk(b"{broken", 0, tickets, scopes, now_ms=0)
    assert result.rejection is not None
    assert result.rejection.reason.value == "invalid_json"

    metrics = scrape(runtime)
    assert metrics["kpistream_tickets_active"] == [
        ({"queue": "billing", "priority": "urgent", "status": "new"}, 1.0)
    ]
    assert metrics["kpistream_events_duplicate_total"][0][1] == 1
    assert metrics["kpistream_first_response_seconds_sum"] == [
        ({"queue": "billing", "priority": "urgent"}, 60.0)
    ]
    rejected = {lab["reason"]: v for lab, v in metrics["kpistream_events_rejected_total"]}
    assert rejected == {"invalid_json": 1.0}


def test_state_writes_rebuild_the_partition_after_a_restart(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    kpi_state: dict[str, Any] = {}
    for event in [
        created("T1", T0),
        created("T2", T0),
        agent_reply("T1", T0 + MINUTE),
        ticket_event("ticket.solved", "T2", T0 + 2 * MINUTE, method="agent"),
    ]:
        result = runtime.process_helpdesk(raw(event), 1, tickets, scopes, now_ms=0)
        kpi_state.update(result.state_writes)
    restarted = WorkerRuntime(runtime.settings, CollectorRegistry())
    restarted.load_partitions([1], kpi_state.items(), tickets.items())
    assert restarted.partitions[1].active == runtime.partitions[1].active
    # Every record was committed: nothing to read again, the newest time comes back.
    restarted.catch_up(runtime.settings.helpdesk_topic, 1, committed=4, end_offset=4)
    # The windows are rebuilt from the tickets: after a reset message, the same partials.
    reset, *partials = restarted.tick(now_ms=0)
    assert reset == {"partition": 1, "reset_from_ms": T0 - 10 * MINUTE}
    assert partials == runtime.tick(now_ms=0)
    # The ids live in the ticket table: a re-delivered event is still a duplicate.
    again = restarted.process_helpdesk(
        raw(agent_reply("T1", T0 + MINUTE, event_id=tickets["T1"]["ids"][1])),
        1,
        tickets,
        scopes,
        now_ms=0,
    )
    assert again.duplicate


def test_after_a_kill_no_window_is_made_final_before_the_events_read_again() -> None:
    """A kill -9 left the marks (kpi_state) ahead of the tickets table: each table is
    where its changelog got to. The rebuilt partition holds its event time until it has
    read its records again; the window keeps the event the tickets table lacked.
    (Before the fix, the first tick made 10:15-10:16 final without T2's creation.)"""
    settings = Settings(max_future="off", live=False, windows=("1m",), grace="10m", partitions=1)
    runtime = WorkerRuntime(settings, CollectorRegistry())
    topic = settings.helpdesk_topic
    tickets: dict[str, Any] = {}
    kpi_state: dict[str, Any] = {}
    merge: dict[str, Any] = {}
    out: list[dict[str, Any]] = []

    def tick(rt: WorkerRuntime) -> None:
        for partial in rt.tick(now_ms=0, tickets=tickets):
            out.extend(m for _, m in rt.merge_step(partial, merge, now_ms=0) if m)
        rt.partials_delivered()

    events = [created("T1", T0), created("T2", T0 + 10_000), agent_reply("T1", T0 + 30 * MINUTE)]
    lost = None
    for offset, event in enumerate(events):
        kpi_state.update(runtime.process_helpdesk(raw(event), 0, tickets, {}, 0).state_writes)
        if offset == 0:
            lost = {k: dict(v) for k, v in tickets.items()}  # the tickets changelog ends here
        if offset == 1:
            tick(runtime)
    assert lost is not None
    restarted = WorkerRuntime(runtime.settings, CollectorRegistry())
    restarted.load_partitions([0], kpi_state.items(), lost.items())
    restarted.load_merge_state(list(merge))
    # Committed: offset 1 (T1's creation); the log ended at 3 when it was assigned.
    restarted.catch_up(topic, 0, committed=1, end_offset=3)
    tick(restarted)  # the clock ticks before the first record is read again
    for offset in (1, 2):
        restarted.record_position(topic, 0, offset, None)
        restarted.process_helpdesk(raw(events[offset]), 0, lost, {}, 0)
    assert restarted.partitions[0].max_event_ms == T0 + 30 * MINUTE
    tick(restarted)
    created_at_10_15 = [
        m["values"]["created"]
        for m in out
        if m["kpi"] == "escalation_rate" and m["is_final"] and not m["dimensions"]
        if m["window_start"] == "2026-11-24T10:15:00.000Z"
    ]
    assert created_at_10_15 == [2]
    late = scrape(restarted).get("kpistream_events_late_total", [])
    assert not any(value for _, value in late)


def test_queues_beyond_the_limit_are_reported_as_other(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    for i, queue in enumerate(["a", "b", "c", "d"]):
        runtime.process_helpdesk(raw(created(f"T{i}", T0, queue=queue)), 0, tickets, {}, 0)
    metrics = scrape(runtime)
    queues = {lab["queue"]: v for lab, v in metrics["kpistream_tickets_active"]}
    assert queues == {"a": 1.0, "b": 1.0, "other": 2.0}
    overflow = [row for row in metrics["kpistream_label_overflow_total"] if row[1]]
    assert overflow == [({"label": "queue"}, 2.0)]


def test_agent_shift_duplicates_are_dropped_within_the_agent_scope(
    runtime: WorkerRuntime,
) -> None:
    shift = {
        "event_id": "s1",
        "type": "agent.shift",
        "occurred_at": "2026-11-24T09:00:00Z",
        "agent_id": "a-1",
        "state": "on",
    }
    scopes: dict[str, Any] = {}
    first = runtime.process_helpdesk(orjson.dumps(shift), 0, {}, scopes, now_ms=0)
    second = runtime.process_helpdesk(orjson.dumps(shift), 0, {}, scopes, now_ms=0)
    assert not first.duplicate
    assert first.event is not None
    assert second.duplicate
    assert scopes["agent:a-1"]["ids"] == ["s1"]


def test_selfservice_nps_and_settled_value_are_counted(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    session = {
        "event_id": "ss1",
        "type": "selfservice.session",
        "occurred_at": "2026-11-24T09:00:00Z",
        "customer_id": "c-9",
        "screens": 3,
        "clicks": 7,
        "succeeded": True,
    }
    events = [
        created("T1", T0),
        ticket_event("survey.nps", "T1", T0 + MINUTE, score=10),
        ticket_event("survey.nps", "T1", T0 + MINUTE, score=3),
        ticket_event(
            "ticket.solved",
            "T1",
            T0 + 2 * MINUTE,
            method="agent",
            settled_amount={"value": "19.99", "currency": "DKK"},
        ),
    ]
    for event in events:
        runtime.process_helpdesk(raw(event), 0, tickets, {}, now_ms=0)
    scopes: dict[str, Any] = {}
    for _ in range(2):  # the second is a duplicate
        runtime.process_helpdesk(orjson.dumps(session), 0, tickets, scopes, now_ms=0)
    metrics = scrape(runtime)
    nps = {lab["category"]: v for lab, v in metrics["kpistream_nps_responses_total"]}
    assert nps == {"promoter": 1.0, "detractor": 1.0}
    assert metrics["kpistream_value_settled_total"] == [({"currency": "DKK"}, 19.99)]
    assert metrics["kpistream_selfservice_sessions_total"] == [({"succeeded": "true"}, 1.0)]
    assert metrics["kpistream_selfservice_clicks_sum"] == [({"succeeded": "true"}, 7.0)]


def sla_counts(runtime: WorkerRuntime) -> dict[tuple[str, str, str], float]:
    return {
        (lab["sla"], lab["priority"], lab["result"]): v
        for lab, v in scrape(runtime).get("kpistream_sla_total", [])
    }


def test_unanswered_ticket_breaches_by_the_clock_and_is_not_counted_again(
    runtime: WorkerRuntime,
) -> None:
    tickets: dict[str, Any] = {}
    runtime.process_helpdesk(raw(created("T1", T0, priority="urgent")), 0, tickets, {}, 0)
    runtime.process_helpdesk(raw(created("T2", T0 + 65 * MINUTE)), 0, tickets, {}, 0)
    # Past the 1 h target by event time, but not by the watermark (grace 10 min) yet: an
    # answer in time could still arrive late. The gauge says so already.
    assert sla_counts(runtime) == {}
    breaching = scrape(runtime)["kpistream_sla_breaching_tickets"]
    assert breaching == [({"sla": "first_response", "queue": "billing", "priority": "urgent"}, 1.0)]
    # Event time moves on: the watermark passes the deadline, the breach is recorded in
    # the ticket's state by the event that moved it.
    runtime.process_helpdesk(raw(agent_reply("T2", T0 + 71 * MINUTE)), 0, tickets, {}, 0)
    assert sla_counts(runtime) == {
        ("first_response", "urgent", "breached"): 1.0,
        ("first_response", "normal", "met"): 1.0,  # T2 answered in six minutes
    }
    assert tickets["T1"]["breached"] == ["first_response"]
    runtime.tick(now_ms=0)
    # Neither the clock nor the answer, later than grace, counts it a second time.
    runtime.process_helpdesk(raw(agent_reply("T1", T0 + 72 * MINUTE)), 0, tickets, {}, 0)
    assert sla_counts(runtime)[("first_response", "urgent", "breached")] == 1.0
    assert not scrape(runtime).get("kpistream_sla_breaching_tickets")


def test_sla_clocks_are_rebuilt_from_the_tickets_table(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    kpi_state: dict[str, Any] = {}
    kpi_state.update(
        runtime.process_helpdesk(
            raw(created("T1", T0, priority="urgent")), 2, tickets, {}, 0
        ).state_writes
    )
    restarted = WorkerRuntime(runtime.settings, CollectorRegistry())
    restarted.load_partitions([2], kpi_state.items(), tickets.items())
    assert set(restarted.sla[2].clocks) == {"T1"}
    restarted.process_helpdesk(raw(created("T2", T0 + 2 * 60 * MINUTE)), 2, tickets, {}, 0)
    assert sla_counts(restarted) == {("first_response", "urgent", "breached"): 1.0}


def test_clock_breach_in_live_mode_is_written_by_the_next_event() -> None:
    settings = Settings(max_future="off", live=True, windows=("1m", "1h"), grace="10m")
    runtime = WorkerRuntime(settings, CollectorRegistry())
    tickets: dict[str, Any] = {}
    runtime.process_helpdesk(raw(created("T1", T0, priority="urgent")), 0, tickets, {}, T0)
    # No event for two hours: the idle partition follows the wall clock.
    runtime.tick(now_ms=T0 + 2 * 60 * MINUTE, tickets=tickets)
    assert sla_counts(runtime) == {("first_response", "urgent", "breached"): 1.0}
    assert tickets["T1"]["breached"] == []  # no table write outside stream iteration
    runtime.process_helpdesk(
        raw(created("T2", T0 + 2 * 60 * MINUTE)), 0, tickets, {}, T0 + 2 * 60 * MINUTE
    )
    assert tickets["T1"]["breached"] == ["first_response"]
    assert "sla:first_response" in tickets["T1"]["live"]


def test_closed_tickets_are_dropped_after_their_retention_in_event_time() -> None:
    settings = Settings(
        max_future="off", live=False, windows=("1m", "1h"), grace="10m", ticket_retention="1d"
    )
    runtime = WorkerRuntime(settings, CollectorRegistry())
    tickets: dict[str, Any] = {}
    day = 24 * 60 * MINUTE
    for event in [
        created("T1", T0),
        ticket_event("ticket.closed", "T1", T0 + MINUTE),
        created("T2", T0 + MINUTE),  # stays open: kept
        agent_reply("T3", T0 + MINUTE),  # its ticket.created never comes: an orphan
    ]:
        runtime.process_helpdesk(raw(event), 0, tickets, {}, now_ms=0)
    assert set(tickets) == {"T1", "T2", "T3"}
    # Event time moves past close + 1 day + grace: T1 and the orphan go, T2 stays.
    runtime.process_helpdesk(raw(created("T4", T0 + day + 12 * MINUTE)), 0, tickets, {}, 0)
    assert set(tickets) == {"T2", "T4"}
    assert scrape(runtime)["kpistream_tickets_pruned_total"] == [({}, 2.0)]


def test_a_reopened_ticket_is_not_dropped() -> None:
    settings = Settings(
        max_future="off", live=False, windows=("1m", "1h"), grace="10m", ticket_retention="1d"
    )
    runtime = WorkerRuntime(settings, CollectorRegistry())
    tickets: dict[str, Any] = {}
    for event in [
        created("T1", T0),
        ticket_event("ticket.closed", "T1", T0 + MINUTE),
        ticket_event("ticket.reopened", "T1", T0 + 2 * MINUTE),
        created("T9", T0 + 2 * 24 * 60 * MINUTE),
    ]:
        runtime.process_helpdesk(raw(event), 0, tickets, {}, now_ms=0)
    assert "T1" in tickets


def shift(event_id: str, agent: str, state: str, minute: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "agent.shift",
            "occurred_at": f"2026-11-24T09:{minute:02d}:00Z",
            "agent_id": agent,
            "state": state,
        }
    )


def test_agents_on_shift_follow_their_latest_shift_event(runtime: WorkerRuntime) -> None:
    scopes: dict[str, Any] = {}
    for raw_event in [
        shift("s1", "a-1", "on", 0),
        shift("s2", "a-2", "on", 1),
        shift("s2", "a-2", "on", 1),  # duplicate
        shift("s3", "a-1", "off", 30),
        shift("s4", "a-3", "on", 31),
    ]:
        runtime.process_helpdesk(raw_event, 1, {}, scopes, now_ms=0)
    assert scrape(runtime)["kpistream_agents_on_shift"] == [({}, 2.0)]
    restarted = WorkerRuntime(runtime.settings, CollectorRegistry())
    restarted.load_partitions([1], [], [], scopes.items())
    assert scrape(restarted)["kpistream_agents_on_shift"] == [({}, 2.0)]


def test_a_final_mark_is_persisted_only_once_its_partials_are_delivered(
    runtime: WorkerRuntime,
) -> None:
    tickets: dict[str, Any] = {}
    first = runtime.process_helpdesk(raw(created("T1", T0)), 0, tickets, {}, 0)
    assert first.state_writes["0|summary"]["final_through_ms"] == T0 - 10 * MINUTE
    runtime.process_helpdesk(raw(created("T2", T0 + 30 * MINUTE)), 0, tickets, {}, 0)
    assert any(m.get("final") for m in runtime.tick(now_ms=0))  # windows made final
    # The partials are not in Kafka yet: the next event must not persist the new mark.
    waiting = runtime.process_helpdesk(raw(created("T3", T0 + 31 * MINUTE)), 0, tickets, {}, 0)
    assert "0|summary" not in waiting.state_writes
    runtime.partials_delivered()
    after = runtime.process_helpdesk(raw(created("T4", T0 + 31 * MINUTE)), 0, tickets, {}, 0)
    assert after.state_writes["0|summary"]["final_through_ms"] == T0 + 20 * MINUTE
