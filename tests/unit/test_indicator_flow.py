"""The indicator path of the worker (stream/indicator_flow.py): bytes in; table write, KPI
messages, dead-letter reason and pipeline counters out; the book rebuilt from the table."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from stream.export.indicator_metrics import IndicatorCollector
from stream.export.metrics import PipelineMetrics
from stream.indicator_flow import IndicatorFlow, IndicatorResult
from stream.kpi.events import Event
from stream.kpi.timefmt import parse_rfc3339_ms
from stream.settings import Settings
from tests.unit.test_indicators import DAY, DEC, NOV, REPORTED, report, validate_kpi_message

TOPIC = "indicators.external"
NOW = parse_rfc3339_ms("2026-12-02T09:00:00Z")


def raw(event: Event) -> bytes:
    return orjson.dumps(event.body)


def process(flow: IndicatorFlow, message: bytes, table: dict[str, Any]) -> IndicatorResult:
    """What the agent does: process, then write the table (after the KPI sends)."""
    result = flow.process(message, NOW)
    table.update(result.state_writes)
    return result


def setup() -> tuple[IndicatorFlow, CollectorRegistry]:
    registry = CollectorRegistry()
    pipeline = PipelineMetrics(registry)
    flow = IndicatorFlow(Settings(max_future="off", live=False), pipeline)
    registry.register(IndicatorCollector(flow.snapshot, pipeline.label_overflow))
    return flow, registry


def count(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_report_writes_its_entry_and_one_final_kpi_message() -> None:
    flow, registry = setup()
    table: dict[str, Any] = {}
    result = process(flow, raw(report(0.042, event_id="a")), table)
    assert result.dlq is None
    assert result.change is not None
    ((key, body),) = result.kpi_messages
    assert (
        key == "external_indicator/30d|name=employee_turnover,unit=ratio|2026-11-01T00:00:00.000Z"
    )
    assert body is not None
    validate_kpi_message(body)
    assert body["emitted_at"] == "2026-12-02T09:00:00.000Z"
    assert list(table) == ["employee_turnover"]
    assert table["employee_turnover"]["periods"][0]["value"] == 0.042
    assert count(registry, "kpistream_events_total", topic=TOPIC, type="indicator.reported") == 1
    assert count(registry, "kpistream_kpi_messages_total") == 1
    labels = {"name": "employee_turnover", "unit": "ratio"}
    assert registry.get_sample_value("kpistream_external_indicator", labels) == 0.042


def test_duplicates_superseded_reports_and_corrections() -> None:
    flow, registry = setup()
    table: dict[str, Any] = {}
    first = report(0.042, event_id="a", at_ms=REPORTED)
    process(flow, raw(first), table)
    assert process(flow, raw(first), table).duplicate
    assert count(registry, "kpistream_events_duplicate_total", topic=TOPIC) == 1
    older = process(flow, raw(report(0.01, event_id="0", at_ms=REPORTED - DAY)), table)
    assert (older.change, older.kpi_messages, older.dlq) == (None, [], None)
    fix = process(flow, raw(report(0.045, event_id="b", at_ms=REPORTED + DAY)), table)
    ((_, body),) = fix.kpi_messages
    assert body is not None
    assert (body["revision"], body["values"]) == (1, {"value": 0.045})
    assert count(registry, "kpistream_events_total", topic=TOPIC, type="indicator.reported") == 3
    # The superseded report's id was written with the entry: its repeat is a duplicate.
    assert "0" in table["employee_turnover"]["ids"]


def test_invalid_messages_go_to_the_dead_letter_topic() -> None:
    flow, registry = setup()
    table: dict[str, Any] = {}
    bad_period = process(flow, raw(report(start=DEC, end=NOV)), table)
    assert bad_period.dlq is not None
    assert bad_period.dlq[0] == "bad_period"
    assert "is not after" in bad_period.dlq[1]
    assert count(registry, "kpistream_events_rejected_total", topic=TOPIC, reason="bad_period") == 1
    not_json = process(flow, b"{nope", table)
    assert not_json.dlq is not None
    assert not_json.dlq[0] == "invalid_json"
    body = report().body
    del body["unit"]
    missing = process(flow, orjson.dumps(body), table)
    assert missing.dlq is not None
    assert missing.dlq[0] == "schema_violation"
    wrong_topic = process(flow, orjson.dumps({**report().body, "type": "ticket.closed"}), table)
    assert wrong_topic.dlq is not None
    assert wrong_topic.dlq[0] == "wrong_topic"
    assert table == {}
    assert all(r.kpi_messages == [] for r in (bad_period, not_json, missing, wrong_topic))


def test_the_book_is_rebuilt_from_the_table_after_a_rebalance() -> None:
    flow, registry = setup()
    table: dict[str, Any] = {}
    process(flow, raw(report(0.042, event_id="a")), table)
    stored = orjson.loads(orjson.dumps(table))
    flow.load(False, stored.items())
    assert flow.snapshot() is None
    assert (
        registry.get_sample_value(
            "kpistream_external_indicator", {"name": "employee_turnover", "unit": "ratio"}
        )
        is None
    )
    flow.load(True, stored.items())
    assert process(flow, raw(report(0.042, event_id="a")), stored).duplicate
    fix = process(flow, raw(report(0.05, event_id="b", at_ms=REPORTED + 1)), stored)
    ((_, body),) = fix.kpi_messages
    assert body is not None
    assert body["revision"] == 1


def test_a_send_that_failed_before_the_table_write_is_redone_after_a_reload() -> None:
    flow, _ = setup()
    table: dict[str, Any] = {}
    process(flow, raw(report(0.042, event_id="a")), table)
    message = raw(report(0.045, event_id="b", at_ms=REPORTED + DAY))
    lost = flow.process(message, NOW)  # the KPI send fails: the table is not written
    assert lost.kpi_messages
    flow.load(True, table.items())
    again = flow.process(message, NOW)  # the re-delivery after the restart
    assert not again.duplicate
    assert again.kpi_messages == lost.kpi_messages
