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


def test_every_file_compose_mounts_exists_and_the_services_find_each_other() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    # The rule files, where the prometheus service mounts them beside its config.
    for rule_file in prometheus["rule_files"]:
        assert (ROOT / "deploy/prometheus" / rule_file).exists(), rule_file
    # Scrape and alerting targets are compose services on the ports they listen on.
    listens = {"worker": Settings().web_port, "alertmanager": 9093}
    targets = [
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    ] + [
        t
        for am in prometheus["alerting"]["alertmanagers"]
        for c in am["static_configs"]
        for t in c["targets"]
    ]
    for target in targets:
        host, port = target.split(":")
        assert host in services, f"{target}: no compose service {host}"
        assert int(port) == listens[host], f"{target}: {host} listens on {listens[host]}"
    assert services["prometheus"]["volumes"][0].endswith(":/etc/prometheus/prometheus.yml:ro")
