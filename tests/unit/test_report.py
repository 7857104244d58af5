from stream.report import as_csv, as_jsonl, rows

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
]


def test_rows_are_oldest_first_and_filter_by_window() -> None:
    table = rows(MESSAGES)
    assert [r["window_start"] for r in table] == [
        "2026-11-24T09:00:00.000Z",
        "2026-11-24T10:00:00.000Z",
    ]
    assert table[0]["dimensions"] == "queue=billing,priority=high"
    assert table[1]["dimensions"] == "all"
    assert [r["window"] for r in rows(MESSAGES, window="1h")] == ["1h"]
    assert rows(MESSAGES, kpi="nps") == []


def test_csv_and_jsonl_carry_every_column() -> None:
    csv_text = as_csv(rows(MESSAGES))
    assert csv_text.splitlines()[0].startswith("kpi,window,window_start,dimensions,count")
    assert len(csv_text.splitlines()) == 3
    assert '"queue=billing,priority=high"' in csv_text
    assert as_jsonl(rows(MESSAGES)).count("\n") == 2
