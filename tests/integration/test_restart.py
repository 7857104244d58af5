"""A worker stopped and started again: state comes back from the changelogs, gauges are
right before any new event, and re-delivered events are still duplicates."""

from __future__ import annotations

import time
import warnings

import orjson
import pytest

from tests.integration.test_pipeline import created, ev, reply
from tests.scrape import samples, total

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

pytestmark = pytest.mark.integration

T0 = 1_795_510_800_000  # 2026-11-24T09:00:00Z
S = 1000


def send(bootstrap: str, topic: str, events: list[dict], partition: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for event in events:
        producer.send(topic, orjson.dumps(event), partition=partition)
    producer.flush()
    producer.close()


def wait_for(worker, predicate, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metrics = samples(worker.metrics_text())
        if predicate(metrics):
            return metrics
        time.sleep(0.5)
    raise AssertionError(f"condition not reached:\n{worker.log_tail()}")


def active_total(metrics) -> float:
    return total(metrics, "kpistream_tickets_active")


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_restart_recovers_state_and_keeps_dedupe(
    kafka, isolated_env, start_worker, store: str
) -> None:
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_STORE": store}
    topic = env["KPI_HELPDESK_TOPIC"]
    first_batch = [
        created("r1", "R1", T0, "billing", "high"),
        created("r2", "R2", T0 + S, "billing", "high"),
        created("r3", "R3", T0 + 2 * S, "technical", "low"),
        reply("r4", "R1", T0 + 60 * S),
    ]
    worker = start_worker(env)
    send(kafka.bootstrap, topic, first_batch)
    wait_for(worker, lambda m: total(m, "kpistream_events_total") == 4)
    worker.stop()

    # Same group, same changelogs: the new process restores the tables.
    worker = start_worker(env)
    metrics = wait_for(worker, lambda m: active_total(m) == 3)
    active = {(lab["queue"], lab["priority"]): v for lab, v in metrics["kpistream_tickets_active"]}
    assert active == {("billing", "high"): 2, ("technical", "low"): 1}

    # Re-delivery of already processed events (as after a crash before the commit)
    # changes nothing; a new event still counts.
    send(
        kafka.bootstrap,
        topic,
        [*first_batch, ev("r5", "ticket.solved", "R2", T0 + 90 * S, method="agent")],
    )
    metrics = wait_for(
        worker,
        lambda m: (
            total(m, "kpistream_events_total") >= 1
            and total(m, "kpistream_events_duplicate_total") == 4
        ),
    )
    assert total(metrics, "kpistream_events_total") == 1
    assert active_total(metrics) == 2
    # The first response was observed before the restart, not again after it.
    assert total(metrics, "kpistream_first_response_seconds_count") == 0
