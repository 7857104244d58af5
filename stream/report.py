"""`kpi report`: the closed windows on the KPI topic, as a table, JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable
from typing import Any

import orjson
from rich.table import Table

COLUMNS = (
    "kpi",
    "window",
    "window_start",
    "dimensions",
    "count",
    "p50_seconds",
    "p90_seconds",
    "p99_seconds",
    "revision",
    "is_final",
)


def read_kpi_topic(bootstrap: str, topic: str, timeout_s: float = 10) -> dict[str, dict[str, Any]]:
    """Every message on the topic up to its current end, the latest per key (as compaction
    would keep them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        latest: dict[str, dict[str, Any]] = {}
        polls_left = int(timeout_s / 0.5)
        while polls_left and any(consumer.position(tp) < end[tp] for tp in assigned):
            polls_left -= 1
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key is not None and record.value is not None:
                        latest[record.key.decode()] = orjson.loads(record.value)
        return latest
    finally:
        consumer.close()


def rows(
    messages: Iterable[dict[str, Any]], kpi: str | None = None, window: str | None = None
) -> list[dict[str, Any]]:
    """Flat rows, oldest window first, filtered by KPI name and window size."""
    out = []
    for message in messages:
        if (kpi and message.get("kpi") != kpi) or (window and message.get("window") != window):
            continue
        values = message.get("values", {})
        dims = message.get("dimensions") or {}
        out.append(
            {
                "kpi": message.get("kpi"),
                "window": message.get("window"),
                "window_start": message.get("window_start"),
                "dimensions": ",".join(f"{k}={v}" for k, v in dims.items()) or "all",
                "count": values.get("count"),
                "p50_seconds": values.get("p50_seconds"),
                "p90_seconds": values.get("p90_seconds"),
                "p99_seconds": values.get("p99_seconds"),
                "revision": message.get("revision"),
                "is_final": message.get("is_final"),
            }
        )
    return sorted(
        out,
        key=lambda r: (r["window_start"] or "", r["kpi"] or "", r["window"] or "", r["dimensions"]),
    )


def as_csv(table: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def as_jsonl(table: list[dict[str, Any]]) -> str:
    return "".join(orjson.dumps(row).decode() + "\n" for row in table)


def as_table(table: list[dict[str, Any]]) -> Table:
    view = Table(title="kpi.windows.v1")
    for column in COLUMNS:
        view.add_column(column, justify="right" if column in ("count",) else "left")
    for row in table:
        view.add_row(
            *(f"{v:.1f}" if isinstance(v, float) else str(v) for v in (row[c] for c in COLUMNS))
        )
    return view
