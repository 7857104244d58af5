"""The Grafana dashboards (deploy/grafana/dashboards, written by
deploy/grafana/build_dashboards.py) read only what exists: the committed JSON is the
generator's, every panel has a unit and a description and reads the `datasource`
variable, every metric is a family of docs/metrics.md or a recording rule, every variable
is defined, and promtool parses every query. tests/integration/test_dashboards.py runs
the queries against a real Prometheus."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
METRICS_DOC = (ROOT / "docs" / "metrics.md").read_text()

# Unit ids of Grafana's value formats (packages/grafana-data/src/valueFormats) used here.
GRAFANA_UNITS = {"none", "short", "percent", "percentunit", "s", "ms", "cps", "ops", "reqps"}
GRAFANA_UNITS |= {"dateTimeAsIso", "dateTimeFromNow", "dtdurations"}
# Series Prometheus adds for every scrape target (not on /metrics).
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Grafana's own variables a query may use.
GRAFANA_VARIABLES = {"__rate_interval", "__range", "__interval"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset"}
PROMQL_WORDS |= {"bool", "and", "or", "unless", "inf", "nan"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA / "build_dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels that show data (row panels only group them)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str, str]]:
    """(where, refId, expr) of every query of every panel."""
    return [
        (f"{name} panel {p['id']} {p['title']!r}", t["refId"], t["expr"])
        for name, board in dashboards().items()
        for p in panels(board)
        for t in p["targets"]
    ]


def documented_names() -> set[str]:
    """Sample names of the families of docs/metrics.md: histograms with their _bucket,
    _count and _sum series, counters as documented (with _total)."""
    names = set()
    for name, kind in re.findall(r"^\| `(kpistream_[a-z_]+)` \| (\w+) \|", METRICS_DOC, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


def recording_rules() -> set[str]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/recording.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (matchers, grouping lists) or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_the_committed_json_is_the_generator_output() -> None:
    built = GENERATOR.build()
    assert sorted(built) == sorted(dashboards()), "run deploy/grafana/build_dashboards.py"
    for name, board in built.items():
        committed = (GRAFANA / "dashboards" / name).read_text()
        assert committed == GENERATOR.render(board), (
            f"{name} differs from the generator: run python deploy/grafana/build_dashboards.py"
        )


def test_every_panel_has_a_grafana_unit_and_a_description() -> None:
    for name, board in dashboards().items():
        assert board["schemaVersion"] >= 39
        assert board["description"]
        titles = [p["title"] for p in panels(board)]
        assert len(titles) == len(set(titles)), f"{name}: two panels share a title"
        for p in panels(board):
            where = f"{name} panel {p['title']!r}"
            assert p["type"] in {"timeseries", "stat", "gauge", "table"}, where
            unit = p["fieldConfig"]["defaults"].get("unit")
            assert unit in GRAFANA_UNITS, f"{where}: unit {unit!r}"
            for override in p["fieldConfig"]["overrides"]:
                for prop in override["properties"]:
                    if prop["id"] == "unit":
                        assert prop["value"] in GRAFANA_UNITS, f"{where}: {prop}"
            assert len(p.get("description", "")) > 40, f"{where}: say what it shows"
            assert p["targets"], where
            # Stat, gauge and table show the newest value; a time series the range.
            for t in p["targets"]:
                assert t["instant"] == (p["type"] != "timeseries"), where
                assert t["range"] == (p["type"] == "timeseries"), where


def test_every_panel_and_query_reads_the_datasource_variable() -> None:
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    variable = {"type": "prometheus", "uid": "${datasource}"}
    for name, board in dashboards().items():
        [ds] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert ds["type"] == "datasource", name
        assert ds["query"] == "prometheus", name
        # By default the provisioned Prometheus.
        assert ds["current"]["value"] == datasource["uid"], name
        for v in board["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == variable, f"{name} variable {v['name']}"
        for p in panels(board):
            assert p["datasource"] == variable, f"{name} panel {p['title']!r}"
            for t in p["targets"]:
                assert t["datasource"] == variable, f"{name} panel {p['title']!r} {t['refId']}"


def test_every_metric_is_a_documented_family_or_a_recording_rule() -> None:
    known = documented_names() | recording_rules() | PROMETHEUS_SERIES
    assert len(documented_names()) > 60
    assert len(recording_rules()) > 20
    used: set[str] = set()
    for where, ref, expr in queries():
        names = metric_names(expr)
        assert names, f"{where} {ref}: no metric in {expr}"
        unknown = names - known
        assert not unknown, f"{where} {ref}: {sorted(unknown)} not in docs/metrics.md or rules"
        used |= names
    for name, board in dashboards().items():
        for v in board["templating"]["list"]:
            if v["type"] == "query":
                selector = re.fullmatch(r"label_values\((.+), *(\w+)\)", v["query"])
                assert selector, f"{name} variable {v['name']}: {v['query']}"
                names = metric_names(selector.group(1))
                for alternatives in re.findall(r'__name__=~"([^"]+)"', selector.group(1)):
                    names |= set(alternatives.split("|"))
                assert names, f"{name} variable {v['name']}"
                assert names <= known, f"{name} variable {v['name']}: {names}"
    # Every family the worker exports is on a dashboard (a histogram by any of its series).
    families = set(re.findall(r"^\| `(kpistream_[a-z_]+)` \|", METRICS_DOC, re.M))
    missing = {f for f in families if not {f, f"{f}_bucket", f"{f}_count", f"{f}_sum"} & used}
    assert not missing, f"on no dashboard: {sorted(missing)}"


def test_the_parser_of_metric_names() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, queue) (rate(kpistream_x_bucket{queue=~"$q",'
        'le="1.0"}[$__rate_interval]))) / on (sla) group_left () (1 - a:b:c) or vector(1e3)'
    )
    assert metric_names(expr) == {"kpistream_x_bucket", "a:b:c"}
    assert metric_names("time() - max by (topic) (kpistream_y)") == {"kpistream_y"}


def test_every_variable_a_query_uses_is_defined() -> None:
    for name, board in dashboards().items():
        variables = [v["name"] for v in board["templating"]["list"]]
        defined = set(variables) | GRAFANA_VARIABLES
        used = set()
        for p in panels(board):
            for t in p["targets"]:
                for var in re.findall(r"\$\{?(\w+)\}?", t["expr"]):
                    assert var in defined, f"{name} panel {p['title']!r}: ${var} is not defined"
                    used.add(var)
        # Every filter is used, and its All is a regex matcher's `.*`.
        assert set(variables) - {"datasource"} <= used, name
        for v in board["templating"]["list"]:
            if v.get("includeAll"):
                assert v["allValue"] == ".*", f"{name} variable {v['name']}"
                assert v["multi"], f"{name} variable {v['name']}"
        for p in panels(board):
            for t in p["targets"]:
                for var in re.findall(
                    r'\w+(=~?)"\$\{?(?:queue|priority|channel|sla|topic|instance)', t["expr"]
                ):
                    assert var == "=~", f"{name} panel {p['title']!r}: a multi-value needs =~"


def test_panels_fit_the_grid_without_overlapping() -> None:
    for name, board in dashboards().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        taken: set[tuple[int, int]] = set()
        for p in board["panels"]:
            pos = p["gridPos"]
            assert 0 <= pos["x"] <= pos["x"] + pos["w"] <= 24, f"{name} {p['title']!r}"
            cells = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & taken, f"{name} {p['title']!r} overlaps"
            taken |= cells


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    # Grafana's variables as it would substitute them: All is `.*`, intervals are durations.
    values = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s", "window": "1h"}
    rules, names = [], []
    for i, (where, ref, expr) in enumerate(queries()):
        text = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), expr)
        rules.append({"record": f"dashboard:query_{i}:parse", "expr": text})
        names.append(f"dashboard:query_{i}:parse = {where} {ref}")
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, "\n".join([result.stdout + result.stderr, *names])
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_docs_list_every_panel() -> None:
    doc = (ROOT / "docs" / "dashboards.md").read_text()
    assert GENERATOR.doc_tables() in doc, (
        "docs/dashboards.md: paste `python deploy/grafana/build_dashboards.py --doc`"
    )


@pytest.mark.parametrize("name", ["kpi-overview.json", "kpi-slo.json", "kpi-pipeline.json"])
def test_each_dashboard_has_a_fixed_uid_and_the_tag(name: str) -> None:
    board = dashboards()[name]
    assert board["uid"] == name.removesuffix(".json")
    assert "kpi-stream" in board["tags"]
    assert "id" not in board  # provisioning assigns it
