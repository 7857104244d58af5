"""From events to a page, with the real servers on loopback: Kafka, a worker, Prometheus
(scraping the worker every second, with a rule file of short windows) and Alertmanager
(deploy/alertmanager/alertmanager.yml, its receivers pointed at a webhook server inside
this test). A burst of urgent billing tickets nobody answers breaches the first-response
SLA: the billing supervisor gets the page, with its labels and annotations; the
healthy returns queue, answered in time, pages no one; and the page resolves once the
burst is over.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream.kpi.timefmt import format_rfc3339_ms
from tests.conftest import free_port, require_tool
from tests.integration.test_pipeline import produce

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# The burn-rate alert of deploy/prometheus/rules/alerts.yml with minutes for hours: the
# share of breached first-response clocks over the last minute, by queue and priority.
SHORT_RULES = {
    "groups": [
        {
            "name": "kpi-stream-test",
            "interval": "1s",
            "rules": [
                {
                    "alert": "KpiSlaBudgetBurnFast",
                    "expr": (
                        "sum by (sla, queue, priority)"
                        ' (increase(kpistream_sla_total{result="breached"}[1m]))'
                        " / sum by (sla, queue, priority)"
                        " (increase(kpistream_sla_total[1m])) > 0.72"
                    ),
                    "for": "2s",
                    "labels": {"severity": "page"},
                    "annotations": {
                        "summary": "{{ $labels.sla }} SLA of {{ $labels.priority }} tickets"
                        " in {{ $labels.queue }} burns its error budget 14x too fast",
                        "description": "{{ $value | humanizePercentage }} of clocks breached",
                        "runbook_url": "https://github.com/kpi-stream/kpi-stream/blob/main/docs/runbooks/KpiSlaBudgetBurnFast.md",
                    },
                }
            ],
        }
    ]
}


class Webhook:
    """The receivers' side: every notification Alertmanager posts, by receiver path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhook.received.append((self.path.strip("/"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet: the test reads what was posted, not the server's access log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@contextlib.contextmanager
def running(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for(check: Any, what: str, timeout_s: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
    raise AssertionError(f"{what} within {timeout_s:.0f} s\n{tails}")


def ticket(eid: str, ticket_id: str, at_ms: int, kind: str, **fields: Any) -> bytes:
    body = {
        "event_id": eid,
        "type": kind,
        "occurred_at": format_rfc3339_ms(at_ms),
        "ticket_id": ticket_id,
        "customer_id": f"c-{ticket_id}",
        **fields,
    }
    return orjson.dumps(body)


def test_an_sla_breach_burst_pages_the_supervisor_of_its_queue_and_resolves(
    kafka, isolated_env, start_worker, tmp_path: Path
) -> None:
    prometheus_bin, alertmanager_bin = (
        require_tool("prometheus"),
        require_tool("prometheus-alertmanager"),
    )
    webhook = Webhook()
    # Live mode, a short grace: the wall clock runs the SLA clocks of the idle burst.
    env = {**isolated_env, "KPI_LIVE": "true", "KPI_GRACE": "5s", "KPI_PARTITIONS": "3"}
    worker = start_worker(env)

    am_port, prom_port = free_port(), free_port()
    am_config = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    am_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in am_config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = hook["url"].replace("127.0.0.1:9095", f"127.0.0.1:{webhook.port}")
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(SHORT_RULES))
    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "kpi-stream",
                "static_configs": [{"targets": [worker.url.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    logs = [tmp_path / "alertmanager.log", tmp_path / "prometheus.log", worker.log_path]
    am_args = [
        alertmanager_bin,
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    ]
    prom_args = [
        prometheus_bin,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    with running(am_args, logs[0]), running(prom_args, logs[1]):
        # A burst, one ticket a second (so that Prometheus sees the counters rise):
        # billing's urgent tickets were created 2 h ago and nobody answered them (the
        # target is 1 h); returns' urgent tickets are answered within a minute.
        for i in range(20):
            now = int(time.time() * 1000)
            billing = {"queue": "billing", "priority": "urgent", "channel": "email"}
            returns = {"queue": "returns", "priority": "urgent", "channel": "email"}
            reply = {"author": "agent", "public": True}
            stream = [
                (i % 3, ticket(f"b{i}", f"B{i}", now - 7_200_000, "ticket.created", **billing)),
                (i % 3, ticket(f"r{i}", f"R{i}", now - 120_000, "ticket.created", **returns)),
                (i % 3, ticket(f"r{i}a", f"R{i}", now - 60_000, "ticket.replied", **reply)),
            ]
            produce(kafka.bootstrap, env["KPI_HELPDESK_TOPIC"], stream)
            time.sleep(1)

        def firing() -> list[dict[str, Any]]:
            return [
                alert
                for receiver, note in webhook.received
                if receiver == "billing-supervisor" and note["status"] == "firing"
                for alert in note["alerts"]
            ]

        pages = wait_for(firing, "the billing supervisor paged", 120, logs)
        page = pages[0]
        assert page["labels"] == {
            "alertname": "KpiSlaBudgetBurnFast",
            "queue": "billing",
            "priority": "urgent",
            "sla": "first_response",
            "severity": "page",
        }
        annotations = page["annotations"]
        assert annotations["summary"] == (
            "first_response SLA of urgent tickets in billing burns its error budget 14x too fast"
        )
        assert annotations["description"] == "100% of clocks breached"
        assert annotations["runbook_url"].endswith("/docs/runbooks/KpiSlaBudgetBurnFast.md")

        # The burst is over (no new breach): within the 1-minute window the page resolves.
        def resolved() -> bool:
            return any(
                receiver == "billing-supervisor" and note["status"] == "resolved"
                for receiver, note in webhook.received
            )

        wait_for(resolved, "the billing page resolved", 180, logs)
        # Nobody else was paged: the answered returns tickets met their SLA.
        assert {receiver for receiver, _ in webhook.received} == {"billing-supervisor"}
        with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        met = 'priority="urgent",queue="returns",result="met",sla="first_response"'
        assert f"kpistream_sla_total{{{met}}} 20.0" in text
    webhook.close()
