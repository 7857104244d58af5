"""CSV rows -> contract events by a column map (stream/local/csvmap.py), and their replay."""

from __future__ import annotations

import csv
import gzip
import io
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from stream.cli import app
from stream.codec import HELPDESK_TYPES, ORDER_TYPES, Decoder, Rejection
from stream.kpi.events import Event
from stream.local.csvmap import (
    ConvertStats,
    MapError,
    convert_csv,
    load_map,
    parse_map,
    read_csv_events,
)
from stream.local.replay import read_csv_messages
from tests.conftest import require_shared_data

ROOT = Path(__file__).resolve().parents[2]
SERVICENOW_MAP = ROOT / "deploy" / "replay-maps" / "servicenow-incident-log.toml"

helpdesk = Decoder(HELPDESK_TYPES)
orders = Decoder(ORDER_TYPES)

MAP = """
[csv]
delimiter = ";"
missing = ["?", "", "n/a"]

[fields]
event_id = "{id}-{rev}"
occurred_at = { column = "at", format = "%d/%m/%Y %H:%M", timezone = "Europe/Copenhagen" }
ticket_id = "id"
customer_id = { column = "who", default = "anonymous" }
note = "{{{id}}}"

[fields.type]
column = "state"

[fields.type.map]
open = "ticket.created"
wait = "ticket.status_changed"
done = "ticket.solved"
ship = "order.shipped"

[types."ticket.created"]
queue = { column = "group", default = "unassigned" }
priority = { column = "prio", map = { "1" = "urgent", "2" = "high", "3" = "normal" } }
channel = { column = "via", map = { Phone = "phone", Mail = "email" }, default = "other" }
touches = { column = "touches", as = "int" }

[types."ticket.status_changed"]
status = { column = "state", map = { open = "new", wait = "pending" } }

[types."ticket.solved"]
method = { value = "agent" }

[types."order.shipped"]
ticket_id = { value = "none" }
order_id = "id"
"""

# Copenhagen: CET (+01:00) in winter, CEST (+02:00) from 29 March 2026 02:00 (02:00-03:00
# does not exist) until 25 October 2026 03:00 (02:00-03:00 happens twice).
CSV_TEXT = """\
id;rev;state;at;who;group;prio;via;touches
T1;0;open;15/1/2026 09:30;C1;billing;1;Phone;3
T1;1;wait;29/03/2026 01:30;C1;?;?;?;?
T1;2;done;29/03/2026 03:30;?;billing;2;Mail;?
T2;0;open;25/10/2026 02:30;C2;?;3;Fax;n/a
T2;1;escalate;25/10/2026 04:00;C2;;;;
T3;0;open;29/03/2026 02:30;C3;billing;1;Phone;1
T4;0;open;1/2/2026 10:00;C4;billing;9;Phone;1
T5;0;open;not a date;C5;billing;1;Phone;1
T6;0;open;1/2/2026 10:00;C6;billing;1;Phone;lots
;1;?;1/2/2026 10:00;C7;billing;1;Phone;1
T8;0;open;1/2/2026 10:00
O1;0;ship;1/7/2026 12:00;C9;;;;
"""


def cmap(text: str = MAP) -> Any:
    return parse_map(tomllib.loads(text), "test map")


def convert(text: str = CSV_TEXT, map_text: str = MAP) -> tuple[list[dict[str, Any]], ConvertStats]:
    stats = ConvertStats()
    return list(convert_csv(io.StringIO(text), cmap(map_text), stats)), stats


def test_rows_become_exactly_the_expected_events() -> None:
    events, _ = convert()
    envelope = {"schema_version": 1}
    assert events == [
        {
            "event_id": "T1-0",
            "type": "ticket.created",
            "occurred_at": "2026-01-15T08:30:00.000Z",  # CET, +01:00
            **envelope,
            "ticket_id": "T1",
            "customer_id": "C1",
            "note": "{T1}",  # a template with literal braces
            "queue": "billing",
            "priority": "urgent",
            "channel": "phone",
            "touches": 3,
        },
        {
            # "?" is missing: queue, priority, ... belong to ticket.created only anyway.
            "event_id": "T1-1",
            "type": "ticket.status_changed",
            "occurred_at": "2026-03-29T00:30:00.000Z",  # still CET, half an hour before DST
            **envelope,
            "ticket_id": "T1",
            "customer_id": "C1",
            "note": "{T1}",
            "status": "pending",
        },
        {
            "event_id": "T1-2",
            "type": "ticket.solved",
            "occurred_at": "2026-03-29T01:30:00.000Z",  # CEST, +02:00
            **envelope,
            "ticket_id": "T1",
            "customer_id": "anonymous",  # the default of a missing customer
            "note": "{T1}",
            "method": "agent",
        },
        {
            # 02:30 happens twice on 25 October: the first, still CEST, is taken.
            "event_id": "T2-0",
            "type": "ticket.created",
            "occurred_at": "2026-10-25T00:30:00.000Z",
            **envelope,
            "ticket_id": "T2",
            "customer_id": "C2",
            "note": "{T2}",
            "queue": "unassigned",  # default for a missing value
            "priority": "normal",
            "channel": "other",  # default for a value not in the map
            # touches "n/a" is missing: left out
        },
        {
            "event_id": "O1-0",
            "type": "order.shipped",
            "occurred_at": "2026-07-01T10:00:00.000Z",
            **envelope,
            "ticket_id": "none",  # a type's field overrides [fields]; the key is order_id
            "customer_id": "C9",
            "note": "{O1}",
            "order_id": "O1",
        },
    ]


def test_skipped_rows_are_counted_by_reason() -> None:
    _, stats = convert()
    assert stats.rows == 12
    assert stats.events == 5
    assert stats.by_type == {
        "ticket.created": 2,
        "ticket.status_changed": 1,
        "ticket.solved": 1,
        "order.shipped": 1,
    }
    assert stats.skipped == {
        "fields.type: no mapping for 'escalate'": 1,
        "fields.occurred_at: a local time that does not exist in Europe/Copenhagen (DST gap)": 1,
        "types.\"ticket.created\".priority: no mapping for '9'": 1,
        "fields.occurred_at: not a time in the format '%d/%m/%Y %H:%M'": 1,
        'types."ticket.created".touches: not an int': 1,
        "fields.type: missing": 1,
        "wrong number of cells": 1,
    }
    assert stats.skipped_total == 7 == stats.rows - stats.events
    assert stats.first_skipped["fields.type: no mapping for 'escalate'"] == (6, "escalate")
    assert stats.first_skipped["wrong number of cells"] == (12, "4 cells, header 9")
    summary = stats.summary()
    assert "12 rows: 5 events, 7 skipped" in summary
    assert "skipped 1: fields.type: no mapping for 'escalate' (first at line 6" in summary


def test_events_pass_the_products_schema_validation() -> None:
    events, _ = convert()
    for event in events:
        decoder = orders if event["type"] in ORDER_TYPES else helpdesk
        verdict = decoder.decode(orjson.dumps(event))
        assert isinstance(verdict, Event), verdict


REPEATS = """
[fields]
event_id = "{id}-{rev}"
type.column = "state"
type.map.New = "ticket.created"
type.map.Active = "ticket.status_changed"
type.map.Resolved = "ticket.solved"
type.map.Closed = "ticket.closed"
occurred_at = { column = "at", format = "%Y-%m-%d %H:%M:%S%z" }
ticket_id = "id"
customer_id = { value = "C" }

[types."ticket.created"]
queue = { value = "q" }
priority = { value = "normal" }
channel = { value = "web" }

[types."ticket.status_changed"]
status = { column = "state", map = { New = "new", Active = "open", Resolved = "solved" } }

[types."ticket.solved"]
method = { value = "agent" }

[repeats]
key = "ticket_id"
"ticket.created" = "ticket.status_changed"
"ticket.solved" = "ticket.status_changed"
"ticket.closed" = "skip"
"""


def test_repeated_states_of_an_audit_log_are_status_changes_not_new_facts() -> None:
    text = (
        "id,rev,state,at\n"
        "A,0,New,2016-03-01 10:00:00+0100\n"
        "A,1,New,2016-03-01 10:05:00+0100\n"  # an update while new: no second creation
        "B,0,New,2016-03-01 10:06:00+0100\n"  # another ticket: its own creation
        "A,2,Resolved,2016-03-01 11:00:00+0100\n"
        "A,3,Resolved,2016-03-01 11:30:00+0100\n"  # still resolved: no second solve
        "A,4,Active,2016-03-02 09:00:00+0100\n"  # reopened ...
        "A,5,Resolved,2016-03-02 10:00:00+0100\n"  # ... and solved again
        "A,6,Closed,2016-03-05 10:00:00+0100\n"
        "A,7,Closed,2016-03-06 10:00:00+0100\n"  # skipped by the map
    )
    events, stats = convert(text, REPEATS)
    assert [(e["event_id"], e["type"], e.get("status")) for e in events] == [
        ("A-0", "ticket.created", None),
        ("A-1", "ticket.status_changed", "new"),
        ("B-0", "ticket.created", None),
        ("A-2", "ticket.solved", None),
        ("A-3", "ticket.status_changed", "solved"),
        ("A-4", "ticket.status_changed", "open"),
        ("A-5", "ticket.solved", None),
        ("A-6", "ticket.closed", None),
    ]
    assert events[0]["occurred_at"] == "2016-03-01T09:00:00.000Z"  # the cell's own offset
    assert stats.repeats == {
        "ticket.created -> ticket.status_changed": 1,
        "ticket.solved -> ticket.status_changed": 1,
    }
    assert stats.skipped == {"repeats: ticket.closed again for the same ticket_id": 1}


def write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        out.write(text)
    return path


def test_a_gzipped_csv_replays_to_the_topic_of_each_type_with_its_key(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "export.csv.gz", CSV_TEXT)
    stats = ConvertStats()
    got = list(read_csv_messages(path, cmap(), None, 1_000, stats=stats))
    assert [(m.topic, m.key, m.kind) for m in got] == [
        ("helpdesk", b"T1", "event"),
        ("helpdesk", b"T1", "event"),
        ("helpdesk", b"T1", "event"),
        ("helpdesk", b"T2", "event"),
        ("orders", b"O1", "event"),
    ]
    assert [orjson.loads(m.value)["event_id"] for m in got] == [
        "T1-0",
        "T1-1",
        "T1-2",
        "T2-0",
        "O1-0",
    ]
    assert {m.emit_at_ms for m in got} == {1_000}  # as fast as possible
    assert stats.events == 5
    assert stats.skipped_total == 7


def test_sort_orders_by_occurred_at_and_keeps_file_order_on_ties(tmp_path: Path) -> None:
    text = (
        "id,rev,state,at\n"
        "A,0,New,2016-03-01 10:00:00+0000\n"
        "A,1,Active,2016-03-03 10:00:00+0000\n"
        "B,0,New,2016-03-02 10:00:00+0000\n"
        "C,0,New,2016-03-01 10:00:00+0000\n"  # the same time as A-0: after it
        "B,1,Active,2016-03-02 10:00:10+0000\n"
    )
    path = tmp_path / "log.csv"
    path.write_text(text)
    column_map = cmap(REPEATS)

    def ids(messages: Any) -> list[str]:
        return [orjson.loads(m.value)["event_id"] for m in messages]

    assert ids(read_csv_messages(path, column_map, None, 0)) == ["A-0", "A-1", "B-0", "C-0", "B-1"]
    in_order = list(read_csv_messages(path, column_map, 10.0, 5_000, sort=True))
    assert ids(in_order) == ["A-0", "C-0", "B-0", "B-1", "A-1"]
    # Ten times faster: one day of event time takes 8640 s of wall time.
    assert [m.emit_at_ms for m in in_order] == [5_000, 5_000, 8_645_000, 8_646_000, 17_285_000]


def test_load_map_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text(MAP)
    column_map = load_map(path)
    assert column_map.source == str(path)
    assert column_map.missing == frozenset({"?", "", "n/a"})
    assert "touches" in column_map.columns()


def bad(replace: str, by: str, text: str = MAP) -> str:
    assert replace in text
    return text.replace(replace, by, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (bad("[csv]", "[cvs]"), "cvs: unknown key"),
        (bad('delimiter = ";"', 'delimiter = ";;"'), "csv.delimiter: must be one character"),
        (bad('missing = ["?", "", "n/a"]', 'missing = "?"'), "csv.missing: must be a list"),
        (bad('event_id = "{id}-{rev}"\n', ""), "fields.event_id: required"),
        (bad('"{id}-{rev}"', '"{id-{rev}"'), "fields.event_id: unbalanced"),
        (bad('"Europe/Copenhagen"', '"Europe/Copenhagn"'), "fields.occurred_at.timezone: unknown"),
        (
            bad(', timezone = "Europe/Copenhagen"', ""),
            "fields.occurred_at.timezone: required for a time without %z",
        ),
        (
            bad('done = "ticket.solved"', 'done = "ticket.done"'),
            "fields.type.map.done: 'ticket.done' is not an event type",
        ),
        (bad('[types."ticket.solved"]', '[types."ticket.slved"]'), 'types."ticket.slved": '),
        (
            bad('method = { value = "agent" }', 'method = { valeu = "agent" }'),
            "method.valeu: unknown",
        ),
        (
            bad('{ column = "group", default', '{ column = "group", template = "x", default'),
            'types."ticket.created".queue: needs exactly one of column, template, value',
        ),
        (bad('as = "int"', 'as = "integer"'), 'types."ticket.created".touches.as: must be one of'),
        (bad('ticket_id = "id"', "ticket_id = [1]"), "fields.ticket_id: must be a column name"),
        (MAP + '\n[repeats]\n"ticket.created" = "skip"\n', "repeats.key: required"),
        (
            MAP + '\n[repeats]\nkey = "ticket_id"\n"ticket.created" = "nothing"\n',
            'repeats."ticket.created": \'nothing\' is neither "skip" nor an event type',
        ),
    ],
)
def test_a_bad_map_fails_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(MapError, match=r"^test map: ") as info:
        cmap(text)
    assert message in str(info.value)


def test_a_bad_map_file_fails_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text(bad('[types."ticket.created"]', '[types."ticket.create"]'))
    with pytest.raises(MapError, match=rf"^{path}: types\.\"ticket\.create\": 'ticket\.create'"):
        load_map(path)
    path.write_text("[fields\n")
    with pytest.raises(MapError, match=rf"^{path}: not a TOML file"):
        load_map(path)


def test_a_column_the_header_lacks_fails_before_any_event_naming_key_and_column() -> None:
    text = CSV_TEXT.replace("touches", "touched", 1)
    with pytest.raises(MapError, match=r"types\.\"ticket\.created\"\.touches: column 'touches'"):
        convert_csv(io.StringIO(text), cmap())


def test_cli_refuses_a_csv_without_a_map_and_a_map_without_a_csv(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "export.csv"
    path.write_text(CSV_TEXT)
    result = runner.invoke(app, ["replay", str(path)])
    assert result.exit_code == 2
    assert "--map" in result.output
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("{}\n")
    result = runner.invoke(app, ["replay", str(jsonl), "--map", str(SERVICENOW_MAP)])
    assert result.exit_code == 2
    assert "--map is for CSV files" in result.output


# --- the real ServiceNow incident log (../shared/data, never copied into the repository)


@pytest.fixture(scope="module")
def incident_log() -> tuple[list[dict[str, Any]], ConvertStats]:
    log = require_shared_data("incident_event_log.csv.gz")
    stats = ConvertStats()
    events = list(read_csv_events(log, load_map(SERVICENOW_MAP), stats))
    return events, stats


def test_incident_log_converts_with_five_explained_skips(
    incident_log: tuple[list[dict[str, Any]], ConvertStats],
) -> None:
    events, stats = incident_log
    assert stats.rows == 141_712
    # incident_state "-100" (INC0028089, INC0030413) is no state of the map.
    assert stats.skipped == {"fields.type: no mapping for '-100'": 5}
    assert len(events) == stats.events == 141_707
    # Every row has its own event id (number + sys_mod_count alone is not unique).
    assert len({e["event_id"] for e in events}) == len(events)


def test_incident_log_events_pass_the_products_schema_validation(
    incident_log: tuple[list[dict[str, Any]], ConvertStats],
) -> None:
    events, _ = incident_log
    rejected = Counter(
        str(verdict)
        for verdict in (helpdesk.decode(orjson.dumps(e)) for e in events)
        if isinstance(verdict, Rejection)
    )
    assert rejected == Counter()


def test_incident_log_creates_each_incident_that_has_a_new_row_once(
    incident_log: tuple[list[dict[str, Any]], ConvertStats],
) -> None:
    events, stats = incident_log
    with gzip.open(
        require_shared_data("incident_event_log.csv.gz"), "rt", encoding="utf-8", newline=""
    ) as rows:
        with_new = {row["number"] for row in csv.DictReader(rows) if row["incident_state"] == "New"}
    created = [e["ticket_id"] for e in events if e["type"] == "ticket.created"]
    assert len(created) == len(set(created)) == len(with_new) == 16_397
    assert set(created) == with_new
    assert stats.repeats["ticket.created -> ticket.status_changed"] == 20_010


def test_incident_log_events_span_2016(
    incident_log: tuple[list[dict[str, Any]], ConvertStats],
) -> None:
    events, _ = incident_log
    times = sorted(e["occurred_at"] for e in events)
    assert times[0] == "2016-02-29T01:23:00.000Z"
    assert times[-1] == "2017-02-18T15:00:00.000Z"
    in_2016 = sum(t.startswith("2016-") for t in times)
    # The log has 140,775 rows of 2016 (the 5 skipped ones among them) and 937 of 2017.
    assert in_2016 == 140_770
