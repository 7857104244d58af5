"""docs/metrics.md lists every metric family the worker exposes, each with a HELP text."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.export.broker_health import BrokerHealth, BrokerHealthCollector
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from tests.unit.helpers import MINUTE, T0, agent_reply, created, ticket_event

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


def test_every_exposed_family_is_documented_with_help() -> None:
    runtime = WorkerRuntime(Settings(live=False), CollectorRegistry())
    events = [
        created("T1", T0),
        agent_reply("T1", T0 + MINUTE, handle_seconds=30),
        ticket_event("ticket.solved", "T1", T0 + 2 * MINUTE, method="agent"),
        ticket_event("ticket.closed", "T1", T0 + 3 * MINUTE),
        created("T2", T0 + 3 * 3_600_000),
    ]
    for event in events:
        runtime.process_helpdesk(orjson.dumps(event.body), 0, {}, {}, now_ms=0)
    runtime.process_helpdesk(b"{broken", 0, {}, {}, now_ms=0)
    runtime.tick(now_ms=0)
    broker = BrokerHealth()
    broker.observe(True, 0)
    runtime.registry.register(BrokerHealthCollector(broker))  # as the worker does
    text = generate_latest(runtime.registry).decode()
    documented = set(re.findall(r"`(kpistream_[a-z_]+)`", DOC))
    families = list(text_string_to_metric_families(text))
    assert len(families) > 20
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        assert name in documented, f"{name} is exposed but not in docs/metrics.md"
        assert family.documentation, f"{name} has no HELP text"
