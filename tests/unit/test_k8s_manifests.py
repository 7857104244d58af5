"""deploy/k8s without a cluster or kubectl: every manifest parses and validates against
the Kubernetes JSON schemas (kubernetes-validate, strict) or the prometheus-operator
CRD schemas (vendored in tests/data/prometheus-operator), the PrometheusRules are what
the generator makes of deploy/prometheus/rules now and promtool accepts them, and the
objects agree with each other and with the code (labels, ports, paths, settings)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.app import make_app
from stream.export.web import register_pages
from stream.settings import Settings, load_settings
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
RULES = ROOT / "deploy" / "prometheus" / "rules"
CRD_SCHEMAS = ROOT / "tests" / "data" / "prometheus-operator"
NAMESPACE = "kpi-stream"
# The oldest Kubernetes the manifests are for, and the newest kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.32", kubernetes_validate.latest_version())
# Kinds checked against the vendored CRD schemas instead of kubernetes-validate's.
CRD_KINDS = {"PodMonitor": "podmonitor-v1.json", "PrometheusRule": "prometheusrule-v1.json"}


# --- loading -------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """What kustomize applies; *.example.yaml are templates for the user (a Secret)."""
    return sorted(
        p
        for p in K8S.glob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
    )


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_objects() -> list[dict[str, Any]]:
    return [doc for path in manifest_files() for doc in documents(path)]


def the(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in all_objects()
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def object_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def statefulset() -> dict[str, Any]:
    return the("StatefulSet", "kpi-stream-worker")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def worker_container() -> dict[str, Any]:
    [container] = pod_spec()["containers"]
    return dict(container)


def config() -> dict[str, str]:
    return dict(the("ConfigMap", "kpi-stream-worker")["data"])


def pod_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a worker pod starts with: the ConfigMap (envFrom) and the
    container's own KPI_ variables, nothing else of this machine's environment."""
    for name in list(os.environ):
        if name.startswith("KPI_"):
            monkeypatch.delenv(name)
    for name, value in config().items():
        monkeypatch.setenv(name, value)
    for var in worker_container().get("env", []):
        if var["name"].startswith("KPI_"):
            monkeypatch.setenv(var["name"], var["value"])
    return load_settings()


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_prometheusrule", K8S / "generate_prometheusrule.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prometheus_rules() -> list[dict[str, Any]]:
    return [o for o in all_objects() if o["kind"] == "PrometheusRule"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- the files ---------------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_and_each_object_is_in_the_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    ids = []
    for obj in all_objects():
        assert {"apiVersion", "kind", "metadata"} <= set(obj), obj
        ids.append(object_id(obj))
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            # Also right for `kubectl apply -f` of one file, without kustomize.
            assert obj["metadata"].get("namespace") == NAMESPACE, object_id(obj)
    assert len(ids) == len(set(ids)), f"objects repeat: {ids}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "obj",
    [o for o in all_objects() if o["kind"] not in CRD_KINDS],
    ids=object_id,
)
def test_core_objects_validate_against_the_kubernetes_schema(
    obj: dict[str, Any], version: str
) -> None:
    # Strict: a field the API does not know fails too (a typo is not silently dropped).
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{object_id(obj)} against Kubernetes {exc.version}: {path}: {exc.message}")


def test_the_example_secret_validates_against_the_kubernetes_schema() -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(example, version, strict=True)
    assert example["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda c: c.update(envfrom=c.pop("envFrom")), "'envfrom' was unexpected"),
        (lambda c: c["ports"][0].update(containerPort="6066"), "is not of type 'integer'"),
        (lambda c: c.pop("name"), "'name' is a required property"),
    ],
    ids=["unknown-field", "wrong-type", "missing-field"],
)
def test_the_kubernetes_schema_check_catches_mistakes(change: Any, complaint: str) -> None:
    broken = copy.deepcopy(statefulset())
    change(broken["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(kubernetes_validate.ValidationError, match=complaint):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


# --- the prometheus-operator custom resources ----------------------------------------


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server's strict field validation applies it: an object
    with declared properties takes no others (unless it preserves unknown fields)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("enum", "default") else _strict(v)) for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator:
    """x-kubernetes-list-type: a "set" repeats no item, a "map" no key."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        items = [json.dumps(item, sort_keys=True) for item in instance]
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        items = [json.dumps([item.get(k) for k in keys]) for item in instance]
    else:
        return
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        yield jsonschema.ValidationError(f"list-type {list_type} repeats {repeated}")


CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type}
)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    schema = json.loads((CRD_SCHEMAS / CRD_KINDS[obj["kind"]]).read_text())
    validator = CrdValidator(_strict(schema))
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
    if obj.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"apiVersion {obj.get('apiVersion')}: the schema is of v1")
    # The CRD schema leaves metadata to the API server: check it as an ObjectMeta (any
    # kind with a metadata field would do; a ConfigMap has no required others).
    try:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]},
            kubernetes_validate.latest_version(),
            strict=True,
        )
    except kubernetes_validate.ValidationError as exc:
        errors.append(f"{'.'.join(str(p) for p in exc.path)}: {exc.message}")
    return errors


@pytest.mark.parametrize("obj", [o for o in all_objects() if o["kind"] in CRD_KINDS], ids=object_id)
def test_custom_resources_validate_against_the_prometheus_operator_crds(
    obj: dict[str, Any],
) -> None:
    assert crd_errors(obj) == []


def test_the_vendored_crd_schemas_have_no_rules_this_check_would_skip() -> None:
    # CEL rules (x-kubernetes-validations) are not evaluated here: a newer CRD with
    # some needs a look before it replaces these.
    for name in CRD_KINDS.values():
        assert "x-kubernetes-validations" not in (CRD_SCHEMAS / name).read_text(), name


def test_every_object_is_checked_against_a_schema() -> None:
    kinds = {o["kind"] for o in all_objects()}
    assert {"PodMonitor", "PrometheusRule"} <= kinds
    for obj in all_objects():
        if obj["kind"] not in CRD_KINDS:
            # Raises SchemaNotFoundError for a kind kubernetes-validate does not know.
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_the_crd_check_catches_mistakes() -> None:
    monitor = copy.deepcopy(the("PodMonitor"))
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    monitor["metadata"]["labels"]["release"] = 1
    errors = crd_errors(monitor)
    assert any("'podMetricEndpoints' was unexpected" in e for e in errors), errors
    assert any(e.startswith("metadata.labels.release") for e in errors), errors
    rule = copy.deepcopy(prometheus_rules()[0])
    groups = rule["spec"]["groups"]
    groups.append(copy.deepcopy(groups[0]))  # one name twice
    groups[1]["rules"][0]["for"] = "2 minutes"
    errors = crd_errors(rule)
    assert any("list-type map repeats" in e for e in errors), errors
    assert any(e.startswith("spec.groups.1.rules.0.for") for e in errors), errors


# --- the PrometheusRules come from the rule files --------------------------------------


def test_the_committed_prometheusrules_are_what_the_generator_makes_now() -> None:
    committed = (K8S / "prometheusrule.yaml").read_text()
    assert committed == generator().render(), (
        "deploy/k8s/prometheusrule.yaml is stale: run python deploy/k8s/generate_prometheusrule.py"
    )
    checked = subprocess.run(
        [sys.executable, str(K8S / "generate_prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_prometheusrules_hold_the_rule_files_groups_unchanged() -> None:
    by_source = {
        r["metadata"]["annotations"]["kpi-stream/source"]: r["spec"]["groups"]
        for r in prometheus_rules()
    }
    expected = {
        f"deploy/prometheus/rules/{p.name}": yaml.safe_load(p.read_text())["groups"]
        for p in sorted(RULES.glob("*.yml"))
    }
    assert by_source == expected


def test_a_rule_file_edit_without_regenerating_is_caught(tmp_path: Path) -> None:
    for path in RULES.glob("*.yml"):
        (tmp_path / path.name).write_text(path.read_text().replace("for: 2m", "for: 3m", 1))
    assert generator().render(tmp_path) != (K8S / "prometheusrule.yaml").read_text()


def test_promtool_accepts_the_rules_of_the_prometheusrules(tmp_path: Path) -> None:
    tool = require_tool("promtool")
    files, count = [], 0
    for rule in prometheus_rules():
        path = tmp_path / f"{rule['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
        files.append(str(path))
        count += sum(len(group["rules"]) for group in rule["spec"]["groups"])
    checked = subprocess.run(
        [tool, "check", "rules", *files], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", checked.stdout))
    assert found == count > 0, checked.stdout


def test_prometheus_selects_the_podmonitor_and_the_rules_alike() -> None:
    release = the("PodMonitor")["metadata"]["labels"]["release"]
    assert [r["metadata"]["labels"]["release"] for r in prometheus_rules()] == [release] * 2


# --- the objects agree with each other -------------------------------------------------


def test_every_selector_matches_the_worker_pods() -> None:
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app"] == "kpi-stream-worker"
    assert matches(statefulset()["spec"]["selector"]["matchLabels"], pod_labels)
    for name in ("kpi-stream-worker", "kpi-stream-worker-headless"):
        assert matches(the("Service", name)["spec"]["selector"], pod_labels), name
    assert matches(the("PodMonitor")["spec"]["selector"]["matchLabels"], pod_labels)
    assert matches(the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    for spread in pod_spec().get("topologySpreadConstraints", []):
        assert matches(spread["labelSelector"]["matchLabels"], pod_labels)


def test_the_statefulset_is_governed_by_the_headless_service() -> None:
    headless = the("Service", statefulset()["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert the("Service", "kpi-stream-worker")["spec"].get("clusterIP") != "None"


def test_every_port_name_used_exists_on_the_container_and_is_the_web_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = pod_settings(monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in worker_container()["ports"]}
    assert ports == {"web": settings.web_port}
    for name in ("kpi-stream-worker", "kpi-stream-worker-headless"):
        for port in the("Service", name)["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name}: {port['targetPort']}"
            assert port["name"] == "web"
    for endpoint in the("PodMonitor")["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports


def test_the_probes_and_the_scrape_ask_pages_the_worker_serves() -> None:
    pages: list[str] = []

    class App:  # records what register_pages declares
        def page(self, path: str, name: str | None = None) -> Any:
            pages.append(path)
            return lambda view: view

    # The pages read only the settings while they are declared.
    runtime = SimpleNamespace(settings=Settings(), registry=CollectorRegistry())
    register_pages(App(), runtime=runtime)  # type: ignore[arg-type]
    container = worker_container()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container, probe
        http = container[probe]["httpGet"]
        assert http["port"] == "web", probe
        assert http["path"] == "/health", probe
        assert http["path"] in pages
    for endpoint in the("PodMonitor")["spec"]["podMetricsEndpoints"]:
        assert endpoint["path"] == "/metrics"
        assert endpoint["path"] in pages


def test_the_podmonitor_gives_the_job_the_alerts_select() -> None:
    alerts = (RULES / "alerts.yml").read_text()
    jobs = set(re.findall(r'job="([^"]+)"', alerts))
    assert jobs == {"kpi-stream"}
    job_label = the("PodMonitor")["spec"]["jobLabel"]
    assert statefulset()["spec"]["template"]["metadata"]["labels"][job_label] == "kpi-stream"


def test_the_state_volume_is_mounted_at_the_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = pod_settings(monkeypatch)
    assert settings.store == "rocksdb://"
    [claim] = statefulset()["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in worker_container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == config()["KPI_DATA_DIR"]
    assert Path(mounts[claim["metadata"]["name"]]) == settings.data_dir
    assert settings.data_dir.is_absolute()
    # The other mounts are pod volumes (the emptyDir for /tmp).
    volumes = {v["name"] for v in pod_spec().get("volumes", [])}
    assert set(mounts) - {claim["metadata"]["name"]} <= volumes


def test_the_configmap_holds_real_settings_and_the_worker_accepts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = config()
    env = [v["name"] for v in worker_container().get("env", [])]
    for name in [*data, *env]:
        if name.startswith("KPI_"):
            assert name[4:].lower() in Settings.model_fields, f"{name} is no setting"
    assert [k for k in data if not k.startswith("KPI_")] == []
    assert data["KPI_WEB_HOST"] == "0.0.0.0"
    settings = pod_settings(monkeypatch)  # raises SettingsError naming a bad value
    assert settings.web_host == "0.0.0.0"
    config_source, secret_source = worker_container()["envFrom"]
    assert config_source["configMapRef"]["name"] == the("ConfigMap")["metadata"]["name"]
    # The secrets: optional (the pods start without), named as the example, whose keys
    # are secret settings.
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert secret_source["secretRef"] == {"name": example["metadata"]["name"], "optional": True}
    for name in example["stringData"]:
        field = Settings.model_fields[name[4:].lower()]
        assert "SecretStr" in str(field.annotation), f"{name} is not a secret setting"


def test_the_replicas_fit_the_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = pod_settings(monkeypatch)
    assert 2 <= statefulset()["spec"]["replicas"] <= settings.partitions


def test_each_pod_advertises_its_stable_dns_name_as_canonical_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = pod_settings(monkeypatch)
    env = worker_container()["env"]
    names = [v["name"] for v in env]
    fields = {v["name"]: v["valueFrom"]["fieldRef"]["fieldPath"] for v in env if "valueFrom" in v}
    assert fields == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    url = next(v["value"] for v in env if v["name"] == "NODE_CANONICAL_URL")
    # $(VAR) expands only variables defined before it in the list.
    assert names.index("NODE_CANONICAL_URL") > max(names.index(n) for n in fields)
    service = statefulset()["spec"]["serviceName"]
    assert url == f"http://$(POD_NAME).{service}.$(POD_NAMESPACE).svc:{settings.web_port}"
    # The installed Faust reads that variable, over the web_host the settings give it.
    pod_url = f"http://kpi-stream-worker-1.{service}.{NAMESPACE}.svc:{settings.web_port}"
    monkeypatch.setenv("NODE_CANONICAL_URL", pod_url)
    assert str(make_app(settings).conf.canonical_url) == pod_url
    # Kubernetes' service variables (KPI_STREAM_WORKER_PORT=tcp://...) stay out of the pod.
    assert pod_spec()["enableServiceLinks"] is False


def test_the_pods_run_locked_down_with_room_to_write_state_and_tmp() -> None:
    spec, container = pod_spec(), worker_container()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    tmp = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
    assert "emptyDir" in tmp
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    # Time for Faust to commit and close its tables after SIGTERM.
    assert spec["terminationGracePeriodSeconds"] >= 30


def test_the_readme_lists_the_topics_the_worker_expects(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = pod_settings(monkeypatch)
    rows = re.findall(
        r"^\s*\| `([^`]+)` \| (\d+) \|(.*)\|\s*$", (K8S / "README.md").read_text(), re.M
    )
    listed = {
        name: (int(n), dict(re.findall(r"`([^=`]+)=([^`]+)`", rest))) for name, n, rest in rows
    }
    assert listed == {s.name: (s.partitions, s.config) for s in settings.topic_specs()}
