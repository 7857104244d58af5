"""Window partials from several partitions merge into one final result per window."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from jsonschema import Draft7Validator
from prometheus_client import CollectorRegistry

from stream.kpi.merge import FIRST_RESPONSE_TIME, partial
from stream.kpi.sketch import QuantileSketch
from stream.runtime import WorkerRuntime
from stream.schema_registry import schema_dir
from stream.settings import Settings
from tests.unit.helpers import agent_reply, created

HOUR = 3_600_000
START = 1_795_510_800_000  # 2026-11-24T09:00:00Z


def sketch(*values: float) -> dict[str, Any]:
    result = QuantileSketch()
    for v in values:
        result.add(v)
    return result.to_dict()


@pytest.fixture
def runtime() -> WorkerRuntime:
    return WorkerRuntime(Settings(partitions=2, live=False), CollectorRegistry())


def test_window_is_emitted_once_every_partition_passed_its_end(runtime: WorkerRuntime) -> None:
    state: dict[str, Any] = {}
    p0 = partial(FIRST_RESPONSE_TIME, HOUR, START, 0, {("billing", "high"): sketch(10, 20)})
    p1 = partial(FIRST_RESPONSE_TIME, HOUR, START, 1, {("billing", "high"): sketch(30)})
    assert runtime.merge_step(p0, state, now_ms=0) == []
    assert runtime.merge_step({"partition": 0, "watermark": START + HOUR}, state, 0) == []
    assert runtime.merge_step(p1, state, now_ms=0) == []  # partition 1: no watermark yet
    out = dict(runtime.merge_step({"partition": 1, "watermark": START + HOUR}, state, 0))
    assert set(out) == {
        "first_response_time/1h|queue=billing,priority=high|2026-11-24T09:00:00.000Z",
        "first_response_time/1h|all|2026-11-24T09:00:00.000Z",
    }
    whole = out["first_response_time/1h|all|2026-11-24T09:00:00.000Z"]
    assert whole["values"]["count"] == 3
    assert whole["values"]["p50_seconds"] == pytest.approx(20, rel=0.01)
    assert whole["is_final"] is True
    assert whole["window_end"] == "2026-11-24T10:00:00.000Z"
    assert state == {"wm|0": START + HOUR, "wm|1": START + HOUR}  # the window is gone
    # A watermark moving on emits nothing more.
    assert runtime.merge_step({"partition": 1, "watermark": START + 2 * HOUR}, state, 0) == []


def test_a_repeated_partial_replaces_the_first(runtime: WorkerRuntime) -> None:
    # After a restart a partition may close (and send) the same window again.
    state: dict[str, Any] = {}
    again = partial(FIRST_RESPONSE_TIME, HOUR, START, 0, {("a", "low"): sketch(5)})
    runtime.merge_step(again, state, 0)
    runtime.merge_step(again, state, 0)
    runtime.merge_step({"partition": 0, "watermark": START + HOUR}, state, 0)
    out = dict(runtime.merge_step({"partition": 1, "watermark": START + HOUR}, state, 0))
    assert out["first_response_time/1h|all|2026-11-24T09:00:00.000Z"]["values"]["count"] == 1


def test_closed_windows_become_partials_and_watermarks(runtime: WorkerRuntime) -> None:
    tickets: dict[str, Any] = {}
    for event in [
        created("T1", START),
        agent_reply("T1", START + 60_000),
        created("T2", START + 2 * HOUR),
    ]:
        runtime.process_helpdesk(orjson.dumps(event.body), 0, tickets, {}, now_ms=0)
    messages = runtime.tick(now_ms=0)
    windows = [m["window"] for m in messages if "window" in m]
    assert f"first_response_time|3600000|{START}" in windows
    assert f"first_response_time|60000|{START + 60_000}" in windows
    assert messages[-1] == {"partition": 0, "watermark": START + 2 * HOUR - 10 * 60_000}
    assert [m for m in runtime.tick(now_ms=0) if "watermark" in m] == []  # unchanged


def test_kpi_messages_follow_their_schema(runtime: WorkerRuntime) -> None:
    schema = json.loads((schema_dir() / "kpi" / "kpi-window.v1.schema.json").read_text())
    Draft7Validator.check_schema(schema)
    state: dict[str, Any] = {}
    runtime.merge_step(
        partial(FIRST_RESPONSE_TIME, HOUR, START, 0, {("q", "low"): sketch(0, 3)}), state, 0
    )
    runtime.merge_step({"partition": 0, "watermark": START + HOUR}, state, 0)
    out = runtime.merge_step({"partition": 1, "watermark": START + HOUR}, state, 0)
    assert len(out) == 2
    for _, message in out:
        errors = list(Draft7Validator(schema).iter_errors(message))
        assert errors == []
