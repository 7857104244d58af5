"""The Faust agent in Faust's test context, with the memory store: no broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from stream.settings import Settings
from stream.worker import Worker
from tests.conftest import free_port
from tests.unit.helpers import MINUTE, T0, agent_reply, created, ticket_event


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    settings = Settings(
        store="memory://", data_dir=tmp_path, live=False, web_port=free_port(), partitions=1
    )
    built = Worker(settings)
    built.app.finalize()
    built.app.flow_control.resume()
    return built


def test_agent_keeps_ticket_state_and_kpis(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        created("T1", T0, priority="high"),
        agent_reply("T1", T0 + 2 * MINUTE),
        created("T2", T0 + MINUTE, queue="technical"),
        ticket_event("ticket.solved", "T2", T0 + 3 * MINUTE, method="agent"),
        created("T1", T0, priority="high", event_id="dup-check"),  # a different id: applied
    ]

    # The customer-activity topic is output here (the integration tests run it on Kafka):
    # what the agent sends to it is recorded.
    sent: list[tuple[bytes, dict[str, object]]] = []

    async def record(key: bytes, value: bytes, **_: object) -> None:
        sent.append((key, orjson.loads(value)))

    monkeypatch.setattr(worker.topics.customers, "send", record)

    async def run() -> None:
        async with worker.agents["helpdesk"].test_context() as agent:
            for event in events:
                await agent.put(orjson.dumps(event.body), key=event.body["ticket_id"].encode())

    asyncio.run(run())
    tickets = worker.tables.tickets
    assert [e[1] for e in tickets["T1"]["events"]] == [
        "ticket.created",
        "ticket.replied",
        "ticket.created",
    ]
    assert tickets["T2"]["counted_as"] is None  # solved: no longer active
    snapshot = worker.runtime.snapshot()
    assert snapshot.active == {("billing", "high", "new"): 1}
    # Every ticket.created becomes an activity of its customer, repeats included.
    assert [(k, v["kind"], v["event_id"]) for k, v in sent] == [
        (b"c-1", "ticket", events[0].event_id),
        (b"c-1", "ticket", events[2].event_id),
        (b"c-1", "ticket", "dup-check"),
    ]
    summary = worker.tables.kpi_state["0|summary"]
    assert summary["final_through_ms"] == T0 - 10 * MINUTE  # the first watermark
