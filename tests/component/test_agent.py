"""The Faust agent in Faust's test context, with the memory store: no broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from stream.activity_batches import customer_partition
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
    sent: list[tuple[int, dict[str, object]]] = []
    messages = []

    async def record(value: bytes, partition: int, **_: object) -> None:
        messages.append(value)
        sent.extend((partition, activity) for activity in orjson.loads(value))

    monkeypatch.setattr(worker.topics.customers, "send", record)

    async def run() -> None:
        async with worker.agents["helpdesk"].test_context() as agent:
            for event in events:
                await agent.put(orjson.dumps(event.body), key=event.body["ticket_id"].encode())
        assert messages == []  # held for a batch (activity_batches.py) ...
        for hook in worker.app.before_commit:  # ... until a commit (or a tick) sends it
            await hook()

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
    # One message, to the partition the customer's key gives.
    home = customer_partition("c-1", worker.settings.partitions)
    assert len(messages) == 1
    assert [(p, v["customer_id"], v["kind"], v["event_id"]) for p, v in sent] == [
        (home, "c-1", "ticket", events[0].event_id),
        (home, "c-1", "ticket", events[2].event_id),
        (home, "c-1", "ticket", "dup-check"),
    ]
    summary = worker.tables.kpi_state["0|summary"]
    assert summary["final_through_ms"] == T0 - 10 * MINUTE  # the first watermark
