from stream.report import as_csv, as_jsonl, as_table, rows

MESSAGES = [
    {
        "kpi": "first_response_time",
        "window": "1h",
        "window_start": "2026-11-24T10:00:00.000Z",
        "dimensions": {},
        "revision": 0,
        "is_final": True,
        "values": {"count": 2, "p50_seconds": 30.0, "p90_seconds": 60.0, "p99_seconds": 60.0},
    },
    {
        "kpi": "first_response_time",
        "window": "1m",
        "window_start": "2026-11-24T09:00:00.000Z",
        "dimensions": {"queue": "billing", "priority": "high"},
        "revision": 0,
        "is_final": True,
        "values": {"count": 1, "p50_seconds": 12.5, "p90_seconds": 12.5, "p99_seconds": 12.5},
    },
    {
        "kpi": "first_response_sla",
        "window": "1h",
        "window_start": "2026-11-24T10:00:00.000Z",
        "dimensions": {},
        "revision": 2,
        "is_final": False,
        "values": {"met": 3, "breached": 1},
    },
]


def test_rows_are_oldest_first_and_filter_by_window() -> None:
    table = rows(MESSAGES)
    assert [r["window_start"] for r in table] == [
        "2026-11-24T09:00:00.000Z",
        "2026-11-24T10:00:00.000Z",
        "2026-11-24T10:00:00.000Z",
    ]
    assert table[0]["dimensions"] == "queue=billing,priority=high"
    assert table[1]["dimensions"] == "all"
    assert [r["window"] for r in rows(MESSAGES, window="1h")] == ["1h", "1h"]
    assert rows(MESSAGES, kpi="nps") == []


def test_csv_and_jsonl_carry_every_column() -> None:
    csv_text = as_csv(rows(MESSAGES))
    header = csv_text.splitlines()[0]
    assert header == (
        "kpi,window,window_start,dimensions,revision,is_final,count,p50_seconds,p90_seconds,"
        "p99_seconds,met,breached"
    )
    assert len(csv_text.splitlines()) == 4
    assert '"queue=billing,priority=high"' in csv_text
    assert as_jsonl(rows(MESSAGES)).count("\n") == 3


def test_table_shows_each_kpi_with_its_own_values() -> None:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(as_table(rows(MESSAGES)))
    text = console.export_text()
    assert "met=3 breached=1" in text
    assert "count=1 p50_seconds=12.5" in text
