"""GET /kpis/windows end to end: the closed windows of the KPI topic, from any worker.

A worker reads the whole KPI topic into its window store, so a second worker in the
same consumer group (which owns other input partitions, or none) answers with the same
windows as the first one, and both answer with exactly the messages on the topic.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from stream.report import read_kpi_topic
from tests.conftest import free_port
from tests.integration.test_pipeline import T0, S, created, ev, produce, reply
from tests.scrape import samples, total

pytestmark = pytest.mark.integration

QUERY = "kpi=first_response_time&window=1m&final=true"
MINUTE_0900 = "first_response_time/1m|all|2026-11-24T09:00:00.000Z"
MINUTE_0901 = "first_response_time/1m|all|2026-11-24T09:01:00.000Z"


def events() -> list[tuple[int, bytes]]:
    """(partition, value): first responses in the 09:00 and 09:01 minutes, then event
    time 20 minutes on in every partition, past the 2-minute grace."""
    per_partition: list[list[dict[str, Any]]] = [
        [created("a1", "T1", T0, "billing", "urgent"), reply("a2", "T1", T0 + 30 * S)],
        [created("b1", "T2", T0 + 10 * S, "technical", "high"), reply("b2", "T2", T0 + 80 * S)],
        [created("c1", "T3", T0 + 20 * S, "billing", "urgent"), reply("c2", "T3", T0 + 90 * S)],
    ]
    later = T0 + 20 * 60 * S
    for p, lst in enumerate(per_partition):
        lst.append(created(f"w{p}", f"W{p}", later, "general", "low"))
        lst.append(ev(f"w{p}c", "ticket.closed", f"W{p}", later + S))
    return [(p, orjson.dumps(e)) for p, lst in enumerate(per_partition) for e in lst]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return orjson.loads(response.read())


def final_minutes_on_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The final 1m first_response_time messages of the topic, in the API's order."""
    latest = read_kpi_topic(bootstrap, topic)
    chosen = [
        (m["window_start"], key, m)
        for key, m in latest.items()
        if m["kpi"] == "first_response_time" and m["window"] == "1m" and m["is_final"]
    ]
    return [m for _, _, m in sorted(chosen, key=lambda item: item[:2])]


def wait_for(check: Any, what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} in {timeout_s} s; last: {last!r}")


def test_every_worker_answers_with_the_closed_windows_of_the_topic(
    kafka, isolated_env, start_worker, tmp_path
) -> None:
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_WINDOWS": "1m,1h", "KPI_GRACE": "2m"}
    first = start_worker(env)
    stream = events()
    produce(kafka.bootstrap, env["KPI_HELPDESK_TOPIC"], stream)

    def final_on_topic() -> list[dict[str, Any]] | None:
        found = final_minutes_on_topic(kafka.bootstrap, env["KPI_KPI_TOPIC"])
        keys = {(m["window_start"], tuple(m["dimensions"].items())) for m in found}
        wanted = {("2026-11-24T09:00:00.000Z", ()), ("2026-11-24T09:01:00.000Z", ())}
        return found if wanted <= keys else None

    expected = wait_for(final_on_topic, "the 09:00 and 09:01 minutes final on the KPI topic")
    # 09:00: T1 (30 s); 09:01: T2 (70 s) and T3 (70 s); each also rolled up as "all".
    assert [(m["window_start"][11:16], m["dimensions"]) for m in expected] == [
        ("09:00", {}),
        ("09:00", {"queue": "billing", "priority": "urgent"}),
        ("09:01", {}),
        ("09:01", {"queue": "billing", "priority": "urgent"}),
        ("09:01", {"queue": "technical", "priority": "high"}),
    ]
    assert [m["values"]["count"] for m in expected] == [1, 1, 2, 1, 1]

    def answer_of(worker: Any) -> Any:
        body = get(f"{worker.url}/kpis/windows?{QUERY}")
        return body if body["windows"] == expected else None

    body = wait_for(lambda: answer_of(first), "the first worker's answer equal to the topic")
    assert (body["count"], body["truncated"]) == (5, False)

    # A second worker of the same group, on another port: it takes some of the input
    # partitions over (or none), and still answers for all of them.
    second = start_worker(
        {**env, "KPI_WEB_PORT": str(free_port()), "KPI_DATA_DIR": str(tmp_path / "worker-b")}
    )
    body = wait_for(lambda: answer_of(second), "the second worker's answer equal to the topic")
    assert body["count"] == 5
    # Final windows do not change when the partitions move: both still agree.
    assert get(f"{first.url}/kpis/windows?{QUERY}")["windows"] == expected
    assert final_minutes_on_topic(kafka.bootstrap, env["KPI_KPI_TOPIC"]) == expected

    # Filters: window_start in [from, to), a dimension, a limit.
    later = get(f"{second.url}/kpis/windows?{QUERY}&from=2026-11-24T09:01:00Z")
    assert later["windows"] == expected[2:]
    early = get(f"{second.url}/kpis/windows?{QUERY}&to=2026-11-24T10:01:00%2B01:00")
    assert early["windows"] == expected[:2]
    billing = get(f"{second.url}/kpis/windows?{QUERY}&queue=billing&limit=1")
    assert billing == {"windows": [expected[1]], "count": 1, "truncated": True}
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(f"{second.url}/kpis/windows?window=5m", timeout=10)
    assert bad.value.code == 400
    assert orjson.loads(bad.value.read())["parameter"] == "window"

    # The store holds every key of the topic, and has read it to its end.
    def store_complete() -> bool:
        metrics = samples(second.metrics_text())
        on_topic = len(read_kpi_topic(kafka.bootstrap, env["KPI_KPI_TOPIC"]))
        return (
            total(metrics, "kpistream_api_windows_stored") == on_topic
            and total(metrics, "kpistream_api_kpi_topic_lag_records") == 0
        )

    wait_for(store_complete, "the second worker's store equal to the topic", timeout_s=30)

    # Current values too: each worker answers for every partition, its own and the
    # other's (asked over HTTP and merged), once the two have shared them out.
    def owned(worker: Any) -> float:
        metrics = samples(worker.metrics_text())
        rows = metrics.get("kpistream_partitions_owned", [])
        return sum(v for lab, v in rows if lab["topic"] == env["KPI_HELPDESK_TOPIC"])

    wait_for(lambda: owned(first) + owned(second) == 3, "the two workers sharing 3 partitions")

    def active(worker: Any, scope: str) -> int:
        rows = get(f"{worker.url}/kpis?kpi=tickets_active&scope={scope}")["tickets_active"]
        return sum(row["count"] for row in rows)

    # T1, T2 and T3 are open in three partitions; the W tickets are closed.
    wait_for(lambda: active(first, "all") == 3, "the first worker answering for all partitions")
    assert active(second, "all") == 3
    assert active(first, "local") + active(second, "local") == 3
    merged = get(f"{second.url}/kpis?kpi=tickets_active")
    assert merged["partitions"] == [0, 1, 2]
    assert merged["workers"] == 2
