"""Window partials from several partitions merge into kpi.windows.v1 messages: revision 0
once every partition's event time has passed the window's end, +1 per change, a final
message once every watermark has, tombstones for values a correction took away."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from jsonschema import Draft7Validator
from prometheus_client import CollectorRegistry

from stream.kpi.catalogue import KPI_NAMES
from stream.kpi.contrib import Contribution
from stream.kpi.merge import Output, WindowMerger, decode_steps, encode_steps
from stream.kpi.partition import Window, window_partials
from stream.kpi.timefmt import format_rfc3339_ms
from stream.runtime import WorkerRuntime
from stream.schema_registry import schema_dir
from stream.settings import Settings
from tests.unit.helpers import agent_reply, created, status_changed, ticket_event

MINUTE = 60_000
HOUR = 3_600_000
GRACE = 10 * MINUTE
START = 1_795_510_800_000  # 2026-11-24T09:00:00Z
HIGH = "queue=billing,priority=high"

SCHEMA = json.loads((schema_dir() / "kpi" / "kpi-window.v1.schema.json").read_text())
VALIDATOR = Draft7Validator(SCHEMA)


def key(kpi: str, dims: str = "all", start: int = START, window: str = "1h") -> str:
    return f"{kpi}/{window}|{dims}|{format_rfc3339_ms(start)}"


FR_ALL = key("first_response_time")
FR_HIGH = key("first_response_time", HIGH)


def fr(seconds: float, queue: str = "billing", at_ms: int = START) -> Contribution:
    return Contribution(at_ms, (queue, "high"), "first_response_seconds", seconds, "fr")


def csat(score: int, at_ms: int) -> Contribution:
    return Contribution(at_ms, ("billing", "high"), f"csat:{score}", 1, "x")


def partials(
    partition: int,
    *changes: Contribution | tuple[Contribution, int],
    size: int = HOUR,
    start: int = START,
) -> list[dict[str, Any]]:
    """What a partition sends for one window holding these contributions (+1 each, or
    with the weight given), one message per dimension set."""
    window = Window(size, start)
    for change in changes:
        c, weight = (change, 1) if isinstance(change, Contribution) else change
        window.add(c, weight, 0.01)
    return window_partials(partition, size, start, window, {}, final=False)


def marks(partition: int, event_ms: int, watermark: int) -> dict[str, Any]:
    return {"partition": partition, "event_ms": event_ms, "watermark": watermark}


def closed(partition: int, end: int = START + HOUR) -> dict[str, Any]:
    """Marks: the partition's event time has passed `end`, its watermark has not."""
    return marks(partition, end, end - GRACE)


def final(partition: int, end: int = START + HOUR) -> dict[str, Any]:
    return marks(partition, end, end)


class Merge:
    """A WindowMerger over two partitions with a dict for its table; every message it
    produces is checked against the kpi.windows.v1 schema.

    As the partitions do, each test follows a partition's partials with its marks: the
    messages a window is due are asserted after those."""

    def __init__(self, partitions: int = 2) -> None:
        self.merger = WindowMerger(partitions, format_rfc3339_ms)
        self.state: dict[str, Any] = {}

    def __call__(self, *messages: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
        """Step every message; the KPI messages they produced, by key (the last wins)."""
        out: list[Output] = []
        for message in messages:
            for m in message if isinstance(message, list) else [message]:
                out += self.merger.step(m, self.state, emitted_at_ms=START + 2 * HOUR)
        for _, body in out:
            if body is not None:
                assert list(VALIDATOR.iter_errors(body)) == [], body
        return dict(out)


def test_window_is_emitted_once_every_partition_passed_its_end() -> None:
    merge = Merge()
    assert merge(partials(0, fr(10), fr(20))) == {}
    assert merge(final(0)) == {}
    assert merge(partials(1, fr(30))) == {}  # partition 1: no marks yet
    assert merge(marks(1, START + HOUR - 1, START)) == {}  # not past the end yet
    out = merge(final(1))
    assert set(out) == {FR_HIGH, FR_ALL}
    whole = out[FR_ALL]
    assert whole["values"]["count"] == 3
    assert whole["values"]["sum_seconds"] == 60
    assert whole["values"]["p50_seconds"] == pytest.approx(20, rel=0.01)
    assert whole["dimensions"] == {}
    assert out[FR_HIGH]["dimensions"] == {"queue": "billing", "priority": "high"}
    # Event time and watermark passed at once: straight to the final message.
    assert (whole["revision"], whole["is_final"]) == (0, True)
    assert (whole["window"], whole["window_end"]) == ("1h", "2026-11-24T10:00:00.000Z")
    assert not [k for k in merge.state if k.startswith("p|")]  # the partials are gone
    # Marks moving on emit nothing more.
    assert merge(final(1, START + 2 * HOUR), final(0, START + 2 * HOUR)) == {}


def test_a_repeated_partial_replaces_the_first() -> None:
    # After a restart a partition may send the same window again; a late event makes
    # it send the window again with more in it.
    merge = Merge()
    merge(partials(0, fr(5)), partials(0, fr(5)))
    merge(closed(0), closed(1))
    assert merge.merger.index  # the window is still open
    out = merge(partials(0, fr(5), fr(7)), final(0), final(1))
    assert out[FR_ALL]["values"]["count"] == 2


def test_revision_0_when_closed_then_one_more_per_change_then_final() -> None:
    merge = Merge()
    merge(partials(0, fr(10)), partials(1, fr(20)))
    assert merge(closed(0)) == {}
    first = merge(closed(1))
    assert set(first) == {FR_HIGH, FR_ALL}
    assert (first[FR_ALL]["revision"], first[FR_ALL]["is_final"]) == (0, False)
    assert first[FR_ALL]["values"]["count"] == 2
    # A late event within grace: partition 0 sends its partial again.
    changed = merge(partials(0, fr(10), fr(5)), closed(0))
    assert (changed[FR_ALL]["revision"], changed[FR_ALL]["is_final"]) == (1, False)
    assert changed[FR_ALL]["values"]["count"] == 3
    assert merge(final(0)) == {}
    last = merge(final(1))
    assert set(last) == {FR_HIGH, FR_ALL}
    assert (last[FR_ALL]["revision"], last[FR_ALL]["is_final"]) == (2, True)
    assert last[FR_ALL]["values"] == changed[FR_ALL]["values"]
    assert (last[FR_HIGH]["revision"], last[FR_HIGH]["is_final"]) == (2, True)


def test_unchanged_window_values_are_not_emitted_again() -> None:
    merge = Merge()
    billing, technical = partials(0, fr(10)), partials(1, fr(20, queue="technical"))
    tech = key("first_response_time", "queue=technical,priority=high")
    merge(billing, technical)
    assert set(merge(closed(0), closed(1))) == {FR_HIGH, tech, FR_ALL}
    assert merge(billing, closed(0)) == {}  # the same partial again (a restart)
    assert merge(closed(0, START + HOUR + MINUTE)) == {}  # marks move, nothing changes
    # A change in one dimension set: that one and the roll-up, not the other.
    assert set(
        merge(partials(1, fr(20, queue="technical"), fr(40, queue="technical")), closed(1))
    ) == {
        tech,
        FR_ALL,
    }


def test_a_value_that_disappears_is_deleted_with_a_tombstone() -> None:
    merge = Merge()
    merge(partials(0, fr(600)))
    assert set(merge(closed(0), closed(1))) == {FR_HIGH, FR_ALL}
    # A late assignment before the reply: the first response moves to another queue.
    moved = partials(0, (fr(600), 1), (fr(600), -1), (fr(600, queue="technical"), 1))
    out = merge(moved, closed(0))
    assert out[FR_HIGH] is None
    tech = out[key("first_response_time", "queue=technical,priority=high")]
    assert tech is not None
    assert tech["values"]["count"] == 1
    last = merge(final(0), final(1))
    assert FR_HIGH not in last  # deleted once, not again
    assert last[FR_ALL] is not None
    assert last[FR_ALL]["is_final"]
    assert last[FR_ALL]["values"]["count"] == 1


def test_a_value_back_after_its_tombstone_continues_its_revisions() -> None:
    merge = Merge()
    merge(partials(0, fr(600)))
    merge(closed(0), closed(1))
    assert merge(partials(0, (fr(600), 1), (fr(600), -1)), closed(0))[FR_HIGH] is None
    back = merge(partials(0, fr(300)), closed(0))[FR_HIGH]
    assert back is not None
    assert back["revision"] == 1  # after revision 0 and the tombstone: not 0 again
    assert back["values"]["count"] == 1


def test_a_partial_for_a_final_window_is_ignored_and_counted() -> None:
    merge = Merge()
    merge(partials(0, fr(10)))
    assert merge(final(0), final(1))[FR_ALL]["is_final"]
    late = partials(1, fr(99))
    assert merge(late, final(1)) == {}
    assert merge.merger.stale_partials == len(late)
    assert not [k for k in merge.state if k.startswith("p|")]


def test_csat_change_is_against_the_previous_window() -> None:
    merge = Merge()
    nine, ten = START, START + HOUR
    merge(partials(0, csat(5, nine), csat(2, nine), start=nine))
    merge(partials(1, csat(5, ten), csat(4, ten), csat(4, ten), csat(1, ten), start=ten))
    out = merge(final(0, ten + HOUR), final(1, ten + HOUR))
    before, after = out[key("csat", start=nine)], out[key("csat", start=ten)]
    assert before["values"] == {"answers": 2, "satisfied": 1, "csat": 0.5, "change": None}
    assert after["values"] == {"answers": 4, "satisfied": 3, "csat": 0.75, "change": 0.25}
    assert out[key("csat", HIGH, start=ten)]["values"]["change"] == 0.25
    # No answers in the window before: no change.
    merge(partials(0, csat(4, ten + 2 * HOUR), start=ten + 2 * HOUR))
    out = merge(final(0, ten + 3 * HOUR), final(1, ten + 3 * HOUR))
    assert out[key("csat", start=ten + 2 * HOUR)]["values"]["change"] is None


# --- from the worker's windows to the messages -----------------------------------------
def raw(event: Any) -> bytes:
    return orjson.dumps(event.body)


@pytest.fixture
def runtime() -> WorkerRuntime:
    return WorkerRuntime(Settings(partitions=2, live=False, max_future="off"), CollectorRegistry())


def test_closed_windows_become_partials_then_marks(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    for event in [
        created("T1", START),
        agent_reply("T1", START + MINUTE),
        created("T2", START + HOUR + 30 * MINUTE),
        created("T3", START + 2 * HOUR),
    ]:
        runtime.process_helpdesk(raw(event), 0, tickets, {}, now_ms=0)
    messages = runtime.tick(now_ms=0)
    assert messages[-1] == marks(0, START + 2 * HOUR, START + 2 * HOUR - GRACE)
    sent = {(m["size_ms"], m["start_ms"], m["dims"]): m for m in messages[:-1]}
    assert len(sent) == len(messages) - 1  # partials only, each once, before the marks
    hour = sent[(HOUR, START, "billing\x1fnormal")]
    assert hour["final"]
    assert hour["counts"]["created"] == 1
    assert hour["counts"]["agent_replies"] == 1
    assert hour["sketches"]["first_response_seconds"]["s"] == 60.0
    assert hour["active_end"] == {"new": 1}
    assert sent[(MINUTE, START + MINUTE, "billing\x1fnormal")]["final"]
    # The next hour has closed (event time passed it) but is within grace.
    assert not sent[(HOUR, START + HOUR, "billing\x1fnormal")]["final"]
    assert sent[(HOUR, START + HOUR, "billing\x1fnormal")]["counts"]["created"] == 1
    assert runtime.tick(now_ms=0) == []  # nothing new: no partial, no marks
    # A late event within grace: its windows are sent again (the marks, if they follow,
    # have not moved).
    runtime.process_helpdesk(raw(agent_reply("T1", START + HOUR + 55 * MINUTE)), 0, tickets, {}, 0)
    again = runtime.close_windows(0)
    resent = {(m["size_ms"], m["start_ms"], m["dims"]): m for m in again if "size_ms" in m}
    assert resent
    assert not any(m["final"] for m in resent.values())
    assert [m for m in again if "size_ms" not in m] in ([], [messages[-1]])
    assert resent[(HOUR, START + HOUR, "billing\x1fnormal")]["counts"]["agent_replies"] == 1
    assert (MINUTE, START + HOUR + 55 * MINUTE, "billing\x1fnormal") in resent


def test_a_tick_s_steps_travel_in_arrays_in_order_and_merge_as_one_by_one(
    runtime: WorkerRuntime,
) -> None:
    tickets: dict[str, Any] = {}
    for partition, event in [
        (0, created("T1", START)),
        (0, agent_reply("T1", START + MINUTE)),
        (1, created("T2", START + HOUR + 30 * MINUTE, queue="technical")),
        (0, created("T3", START + 2 * HOUR)),
        (1, created("T4", START + 2 * HOUR)),
    ]:
        runtime.process_helpdesk(raw(event), partition, tickets, {}, now_ms=0)
    steps = runtime.tick(now_ms=0)
    assert len(steps) > 3
    values = encode_steps(steps, max_bytes=600)  # small, to make several messages
    assert 1 < len(values) < len(steps)
    assert all(len(v) <= 600 or v.count(b'"partition"') == 1 for v in values)
    wire = [step for value in values for step in decode_steps(value)]
    assert wire == steps  # every step, once, in order
    assert encode_steps([]) == []
    # A message of one step alone (the form before the arrays; indicator customer counts).
    assert decode_steps(orjson.dumps(steps[0])) == [steps[0]]

    one_by_one: dict[str, Any] = {}
    expected = [out for step in steps for out in runtime.merge_step(step, one_by_one, now_ms=0)]
    assert expected
    batched: dict[str, Any] = {}
    runtime.load_merge_state([])
    got = [
        out
        for v in values
        for step in decode_steps(v)
        for out in runtime.merge_step(step, batched, now_ms=0)
    ]
    assert got == expected
    assert batched == one_by_one


def test_kpi_messages_follow_their_schema(runtime: WorkerRuntime) -> None:
    Draft7Validator.check_schema(SCHEMA)
    tickets: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    session = {
        "event_id": "ss-1",
        "type": "selfservice.session",
        "occurred_at": format_rfc3339_ms(START + 8 * MINUTE),
        "customer_id": "c-9",
        "screens": 3,
        "clicks": 7,
        "succeeded": True,
    }
    first = [
        created("T1", START, priority="urgent", subject_kind="complaint"),
        agent_reply("T1", START + 5 * MINUTE, handle_seconds=90),
        ticket_event("ticket.escalated", "T1", START + 10 * MINUTE, level=1),
        status_changed("T1", START + 15 * MINUTE, "pending"),
        status_changed("T1", START + 20 * MINUTE, "open"),
        ticket_event(
            "ticket.solved",
            "T1",
            START + 30 * MINUTE,
            method="agent",
            settled_amount={"value": "19.99", "currency": "EUR"},
        ),
        ticket_event("survey.csat", "T1", START + 35 * MINUTE, score=5),
        ticket_event("survey.nps", "T1", START + 36 * MINUTE, score=9),
        ticket_event("ticket.reopened", "T1", START + 40 * MINUTE),
        ticket_event("ticket.solved", "T1", START + 45 * MINUTE, method="phone"),
        ticket_event("ticket.closed", "T1", START + 50 * MINUTE),
        created("T2", START + MINUTE, queue="technical"),
        created("T8", START + 3 * HOUR),
    ]
    second = [
        created("T3", START + 2 * MINUTE, priority="urgent"),
        ticket_event("ticket.assigned", "T3", START + 3 * MINUTE, queue="technical"),
        agent_reply("T3", START + 6 * MINUTE),
        ticket_event("survey.csat", "T3", START + 7 * MINUTE, score=2),
        created("T9", START + 3 * HOUR),
    ]
    for event in first:
        runtime.process_helpdesk(raw(event), 0, tickets, scopes, now_ms=0)
    for event in second:
        runtime.process_helpdesk(raw(event), 1, tickets, scopes, now_ms=0)
    runtime.process_helpdesk(orjson.dumps(session), 1, tickets, scopes, now_ms=0)
    state: dict[str, Any] = {}
    out: list[tuple[str, dict[str, Any] | None]] = []
    for message in runtime.tick(now_ms=0):
        out += runtime.merge_step(message, state, now_ms=0)
    bodies = [body for _, body in out if body is not None]
    assert {body["kpi"] for body in bodies} == set(KPI_NAMES)
    for body in bodies:
        assert list(VALIDATOR.iter_errors(body)) == [], body
    settled = [b for b in bodies if b["kpi"] == "value_settled" and b["window"] == "1h"]
    assert {tuple(sorted(b["dimensions"])) for b in settled} == {
        ("currency",),
        ("currency", "priority", "queue"),
    }
    assert all("sketches" in b for b in bodies if b["kpi"] == "self_service")


def test_the_schema_refuses_the_old_message_form() -> None:
    old: dict[str, Any] = {
        "kpi": "first_response_time",
        "window": "1h",
        "window_start": "2026-11-24T09:00:00.000Z",
        "window_end": "2026-11-24T10:00:00.000Z",
        "dimensions": {},
        "revision": 0,
        "is_final": True,
        "values": {"count": 1},
        "sketch": {"a": 0.01, "k": [1], "c": [1], "z": 0, "s": 1.0, "mn": 1.0, "mx": 1.0},
        "emitted_at": "2026-11-24T11:00:00.000Z",
        "schema_version": 1,
    }
    assert not VALIDATOR.is_valid(old)  # a single `sketch` is gone
    del old["sketch"]
    assert VALIDATOR.is_valid(old)
    sketch: dict[str, Any] = {"a": 0.01, "k": [], "c": [], "z": 1, "s": 0}
    old["sketches"] = {"first_response_seconds": sketch}
    assert VALIDATOR.is_valid(old)
    sketch["mn"] = 0.0  # no min/max any more
    assert not VALIDATOR.is_valid(old)
    old["sketches"] = {}
    old["values"] = {"count": "1"}
    assert not VALIDATOR.is_valid(old)


def test_staged_state_reads_its_own_writes_and_writes_only_on_commit() -> None:
    from stream.kpi.merge import StagedState

    table = {"a": 1, "b": 2}
    staged = StagedState(table)
    staged["a"] = 10
    del staged["b"]
    staged["c"] = 3
    assert (staged["a"], "b" in staged, staged.get("c"), sorted(staged)) == (
        10,
        False,
        3,
        ["a", "c"],
    )
    assert table == {"a": 1, "b": 2}  # nothing written before the output is delivered
    staged.commit()
    assert table == {"a": 10, "c": 3}
