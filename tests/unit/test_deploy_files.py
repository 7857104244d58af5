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


def test_grafana_provisions_the_dashboards_it_mounts_and_reads_the_compose_prometheus() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    image, _, tag = grafana["image"].partition(":")
    assert image == "grafana/grafana"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin a Grafana release, not {tag!r}"
    assert "prometheus" in grafana["depends_on"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    # Grafana reads its provisioning files from /etc/grafana/provisioning (the image's
    # GF_PATHS_PROVISIONING).
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "GF_PATHS_PROVISIONING" not in grafana.get("environment", {})
    for source in mounts:
        assert (ROOT / source).is_dir(), source

    provisioning = ROOT / "deploy/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    [prometheus] = datasources["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["uid"] == "kpi-prometheus"
    host, port = prometheus["url"].removeprefix("http://").split(":")
    assert host == "prometheus"
    assert host in services
    assert port == "9090"  # Prometheus' default --web.listen-address, published as 9090
    assert services["prometheus"]["ports"] == [f"127.0.0.1:{port}:{port}"]

    # The file provider reads the directory compose mounts the dashboards at.
    providers = yaml.safe_load((provisioning / "dashboards/kpi-stream.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "kpi-stream"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    dashboards = sorted(p.name for p in (ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert dashboards == ["kpi-overview.json", "kpi-pipeline.json", "kpi-slo.json"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/kpi-overview.json"
