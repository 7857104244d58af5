"""The Docker stack creates the same topics as `kpi kafka up`: one source of truth drifts
otherwise, and a worker would meet topics with the wrong partitions."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stream.local.broker import KAFKA_VERSION
from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_creates_the_topics_the_worker_expects() -> None:
    script = compose()["services"]["topics"]["command"][0]
    created = {}
    for line in script.splitlines():
        match = re.search(r"create --topic (\S+) --partitions (\d+)(.*)", line)
        if match:
            configs = dict(re.findall(r"--config (\S+)=(\S+)", match.group(3)))
            created[match.group(1)] = (int(match.group(2)), configs)
    expected = {s.name: (s.partitions, s.config) for s in Settings().topic_specs()}
    assert created == expected


def test_compose_runs_the_same_kafka_as_the_local_broker() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    # Published on the host's loopback only.
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")
