"""Every query of every Grafana dashboard returns data from real servers on loopback:
Kafka, a worker and Prometheus, which scrapes the worker every second and evaluates the
real recording rules (deploy/prometheus/rules/recording.yml) every second.

The feed: 38 days of simulated help-desk and order traffic (`kpi simulate`, with
duplicates, late and malformed messages), replayed with `kpi replay` 55,000 times faster
than it happened (about a minute) while Prometheus scrapes. It starts on a 30-day
boundary of the epoch, so a 30-day retention window (O8) and many 7-day conversion
periods (O7) are decided. Then what this much simulated traffic has too rarely: a
ticket created days late (late facts), a runaway ticket of more than 1,000 events (events
not applied) and an urgent ticket 10 minutes before its first-response target (at risk);
and one external indicator (`kpi indicator set`). `KPI_MAX_QUEUES=4` puts the fifth
queue under `other` (label overflow).

Then each query of each panel runs as Grafana would run it: the `datasource` variable is
the data source itself, the query variables take their values from label_values() (All
is `.*`, a single-value variable its default when it exists), `$__rate_interval` is 1m
and `$__range` 15m (the whole run). Each must parse and return a value that is not NaN.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream.kpi.timefmt import format_rfc3339_ms
from tests.conftest import free_port, require_tool
from tests.integration.test_page import running, wait_for
from tests.scrape import samples

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"

START = "2026-05-07T00:00:00Z"  # day 20,580 of the epoch: a 30-day window starts here
# ~65,000 messages of 38 days, replayed in about a minute.
SIMULATE = ["simulate", "--no-pace", "--start", START, "--duration", "38d", "--rate", "0.02"]
SIMULATE += ["--seed", "6", "--duplicates", "0.01", "--late", "0.01", "--malformed", "0.002"]
SPEED = 55_000
INDICATOR = ["indicator", "set", "employee_turnover", "0.042", "--unit", "ratio"]
INDICATOR += ["--period", "2026-05", "--source", "HR system"]
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
# Grafana's own variables, as it would set them for this run.
BUILTIN = {"__rate_interval": "1m", "__range": "15m", "__interval": "15s"}
# Families the extra events are there for: the run must have them before the queries.
RARE = (
    "kpistream_sla_at_risk_tickets",
    "kpistream_events_late_total",
    "kpistream_events_dropped_total",
    "kpistream_external_indicator",
)


def kpi(*args: str, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"kpi {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def event(kind: str, ticket: str, at_ms: int, n: int, **fields: Any) -> bytes:
    body = {
        "event_id": f"x-{ticket}-{n}",
        "type": kind,
        "occurred_at": format_rfc3339_ms(at_ms),
        "schema_version": 1,
        "ticket_id": ticket,
        "customer_id": f"C-{ticket}",
        **fields,
    }
    return orjson.dumps(body)


def created(ticket: str, at_ms: int, queue: str, priority: str) -> bytes:
    fields = {"queue": queue, "priority": priority, "channel": "email", "subject_kind": "question"}
    return event("ticket.created", ticket, at_ms, 0, **fields)


def customer_reply(ticket: str, at_ms: int, n: int) -> bytes:
    """A public reply by the customer: it stops no SLA clock."""
    return event("ticket.replied", ticket, at_ms, n, author="customer", public=True)


def rare_events(end_ms: int) -> list[bytes]:
    """Bare events for `kpi replay`, after a feed whose newest event is at `end_ms`: a
    ticket created 3 days late, a runaway ticket of 1,011 events (the last ones over
    1,000 are not applied) and an urgent ticket due 1 h after its creation, whose
    partition's newest event is 10 minutes before that."""
    runaway = [customer_reply("T-RUNAWAY", end_ms - 2 * HOUR + i * 1000, i) for i in range(1, 1011)]
    return [
        created("T-LATE", end_ms - 3 * DAY, "billing", "normal"),
        created("T-RUNAWAY", end_ms - 2 * HOUR, "technical", "low"),
        *runaway,
        created("T-AT-RISK", end_ms + HOUR, "billing", "urgent"),
        customer_reply("T-AT-RISK", end_ms + HOUR + 50 * MINUTE, 1),
    ]


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # a bad query: 400 with the error as JSON
            return json.loads(error.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def values(self, expr: str) -> list[str]:
        answer = self.get("/api/v1/query", query=expr)
        return [r["value"][1] for r in answer.get("data", {}).get("result", [])]


def variable_values(prom: Prometheus, board: dict[str, Any], at: float) -> dict[str, str]:
    """The value Grafana gives each variable: All is the variable's allValue (`.*`),
    a single-value variable its default if label_values() has it, else the first."""
    values = dict(BUILTIN)
    for var in board["templating"]["list"]:
        if var["type"] == "datasource":
            continue
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", var["query"])
        assert match, f"{board['uid']} variable {var['name']}: {var['query']}"
        selector, label = match.groups()
        answer = prom.get(
            f"/api/v1/label/{label}/values", **{"match[]": selector, "start": at - 900, "end": at}
        )
        options = answer["data"]
        assert options, f"{board['uid']}: variable {var['name']} has no values ({var['query']})"
        if var["includeAll"]:
            values[var["name"]] = var["allValue"]
        else:
            default = var["current"]["value"]
            values[var["name"]] = default if default in options else options[0]
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def test_every_panel_of_every_dashboard_returns_data(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    prometheus_bin = require_tool("prometheus")
    started = time.monotonic()
    env = {
        **isolated_env,
        "KPI_LIVE": "false",  # a replay of history: event time closes the windows
        "KPI_GRACE": "1m",
        "KPI_WINDOWS": "1h,1d",
        "KPI_MAX_QUEUES": "4",
    }
    feed = tmp_path / "feed.jsonl"
    kpi(*SIMULATE, "--to", str(feed), env=env)
    end_ms = max(orjson.loads(line)["emit_at_ms"] for line in feed.read_bytes().splitlines())
    extras = tmp_path / "rare.jsonl"
    extras.write_bytes(b"\n".join(rare_events(end_ms)) + b"\n")

    worker = start_worker(env)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        # The real rules: their groups set no interval, so they run every second here.
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "kpi-stream",
                "static_configs": [{"targets": [worker.url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    args = [
        prometheus_bin,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    logs = [tmp_path / "prometheus.log", worker.log_path]
    prom = Prometheus(port)
    with running(args, logs[0]):
        wait_for(
            lambda: prom.ready() and prom.values('up{job="kpi-stream"}') == ["1"],
            "Prometheus scrapes the worker",
            60,
            logs,
        )
        kpi("replay", str(feed), "--speed", str(SPEED), env=env)
        kpi("replay", str(extras), env=env)
        kpi(*INDICATOR, env=env)

        def settled() -> bool:
            metrics = samples(worker.metrics_text())
            lags = [v for _, v in metrics.get("kpistream_consumer_lag_records", [])]
            return bool(lags) and not any(lags) and all(name in metrics for name in RARE)

        wait_for(settled, "the worker processed the feed", 120, logs)
        wait_for(lambda: all(prom.values(name) for name in RARE), "Prometheus scraped it", 30, logs)
        time.sleep(2)  # the recording rules evaluate once more
        at = time.time()

        groups = prom.get("/api/v1/rules", type="record")["data"]["groups"]
        expected = yaml.safe_load(RULES.read_text())["groups"]
        assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in expected)
        broken = [r for g in groups for r in g["rules"] if r["health"] == "err"]
        assert not broken, broken

        failures, count = [], 0
        for path in sorted(DASHBOARDS.glob("*.json")):
            board = json.loads(path.read_text())
            values = variable_values(prom, board, at)
            for panel in board["panels"]:
                for target in panel.get("targets", []):
                    count += 1
                    expr = substitute(target["expr"], values)
                    answer = prom.get("/api/v1/query", query=expr, time=at)
                    where = f"{path.name} panel {panel['id']} {panel['title']!r} {target['refId']}"
                    if answer["status"] != "success":
                        failures.append(f"{where}: {answer.get('error')}\n    {expr}")
                        continue
                    result = answer["data"]["result"]
                    if not any(r["value"][1] != "NaN" for r in result):
                        got = "no series" if not result else f"{len(result)} series, all NaN"
                        failures.append(f"{where}: no data ({got})\n    {expr}")
        assert count > 100
        assert not failures, f"{len(failures)} of {count} queries:\n" + "\n".join(failures)
    print(f"\n{count} dashboard queries returned data; {time.monotonic() - started:.0f} s")
