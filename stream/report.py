"""`kpi report`: the closed windows on the KPI topic, as a table, JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from rich.table import Table

# Every row has these; then the values of its KPI (docs/kpis.md names them per KPI).
COLUMNS = ("kpi", "window", "window_start", "dimensions", "revision", "is_final")


def read_kpi_topic(
    bootstrap: str,
    topic: str,
    timeout_s: float = 10,
    *,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every message on the topic up to its current end, the latest per key (as compaction
    would keep them). `client_options`: the consumer's security arguments
    (stream.kafka_security.kafka_python_options); none: PLAINTEXT."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        **(client_options or {}),
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        latest: dict[str, dict[str, Any]] = {}
        # Read to the end offsets taken at the start; the deadline is wall time (a topic
        # of millions of messages takes many polls, a stuck broker must not hang us).
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:  # a tombstone: the value was taken back
                        latest.pop(record.key.decode(), None)
                    else:
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
        dims = message.get("dimensions") or {}
        out.append(
            {
                "kpi": message.get("kpi"),
                "window": message.get("window"),
                "window_start": message.get("window_start"),
                "dimensions": ",".join(f"{k}={v}" for k, v in dims.items()) or "all",
                "revision": message.get("revision"),
                "is_final": message.get("is_final"),
                **message.get("values", {}),
            }
        )
    return sorted(
        out,
        key=lambda r: (r["window_start"] or "", r["kpi"] or "", r["window"] or "", r["dimensions"]),
    )


def value_columns(table: list[dict[str, Any]]) -> list[str]:
    """The value names of the rows, in the order they first appear."""
    names: dict[str, None] = {}
    for row in table:
        names.update((k, None) for k in row if k not in COLUMNS)
    return list(names)


def as_csv(table: list[dict[str, Any]]) -> str:
    """One column per value name of any row (empty where a KPI has no such value)."""
    buffer = io.StringIO()
    columns = [*COLUMNS, *value_columns(table)]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def as_jsonl(table: list[dict[str, Any]]) -> str:
    return "".join(orjson.dumps(row).decode() + "\n" for row in table)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def as_table(table: list[dict[str, Any]]) -> Table:
    """Fixed columns, then the KPI's values as name=value pairs (KPIs differ in values)."""
    view = Table(title="kpi.windows.v1")
    for column in (*COLUMNS, "values"):
        view.add_column(column)
    for row in table:
        values = " ".join(f"{k}={_show(v)}" for k, v in row.items() if k not in COLUMNS)
        view.add_row(*(_show(row[c]) for c in COLUMNS), values)
    return view
