import gzip
from pathlib import Path

import orjson

from stream.local.feed import feed_to_file
from stream.local.replay import read_messages
from stream.local.simulator import SimConfig, simulate

T0 = 1_795_515_330_000


def test_simulator_file_replays_byte_for_byte(tmp_path: Path) -> None:
    config = SimConfig(
        seed=7, start_ms=T0, duration_ms=600_000, duplicate_share=0.05, malformed_share=0.05
    )
    original = list(simulate(config))
    path = tmp_path / "sim.jsonl"
    feed_to_file(iter(original), path)
    replayed = list(read_messages(path, speed=None, start_wall_ms=0))
    assert [(m.topic, m.key, m.value, m.kind) for m in replayed] == [
        (m.topic, m.key, m.value, m.kind) for m in original
    ]
    assert {m.emit_at_ms for m in replayed} == {0}  # as fast as possible: all due now


def test_bare_events_go_to_their_topic_with_their_key(tmp_path: Path) -> None:
    lines = [
        {
            "event_id": "1",
            "type": "ticket.created",
            "occurred_at": "2026-11-24T10:00:00Z",
            "ticket_id": "T1",
        },
        {
            "event_id": "2",
            "type": "order.placed",
            "occurred_at": "2026-11-24T10:00:10Z",
            "order_id": "O1",
        },
        {
            "event_id": "3",
            "type": "indicator.reported",
            "occurred_at": "2026-11-24T10:00:20Z",
            "name": "employee_turnover",
        },
    ]
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"\n".join(orjson.dumps(line) for line in lines) + b"\n{broken\n")
    got = list(read_messages(path, speed=10.0, start_wall_ms=1_000))
    assert [(m.topic, m.key) for m in got] == [
        ("helpdesk", b"T1"),
        ("orders", b"O1"),
        ("indicators", b"employee_turnover"),
        ("helpdesk", None),
    ]
    # Ten times faster: 10 s of event time take 1 s; the broken line is due at once.
    assert [m.emit_at_ms for m in got] == [1_000, 2_000, 3_000, 1_000]
    assert got[-1].value == b"{broken"
