"""deploy/alertmanager against the real amtool: the configuration loads, and each kind
of alert reaches the receiver it should (pages to the supervisor of their queue, a
default for pages without one, tickets to the ticket receiver)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("amtool")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_the_configuration_loads() -> None:
    checked = amtool("check-config", str(CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["severity=page", "queue=billing", "alertname=KpiSlaBudgetBurnFast"],
            "billing-supervisor",
        ),
        (
            ["severity=page", "queue=technical", "alertname=KpiUrgentTicketsAboutToBreach"],
            "technical-supervisor",
        ),
        (
            ["severity=page", "queue=shipping", "alertname=KpiSlaBudgetBurnMedium"],
            "shipping-supervisor",
        ),
        (
            ["severity=page", "queue=returns", "alertname=KpiSlaBudgetBurnFast"],
            "returns-supervisor",
        ),
        (
            ["severity=page", "queue=general", "alertname=KpiSlaBudgetBurnFast"],
            "default-supervisor",
        ),
        (["severity=page", "alertname=KpiWorkerDown"], "default-supervisor"),
        (
            ["severity=page", "channel=web", "alertname=KpiOrderConfirmationSlow"],
            "default-supervisor",
        ),
        (["severity=ticket", "queue=billing", "alertname=KpiSlaBudgetBurnSlow"], "tickets"),
        (["severity=ticket", "topic=helpdesk.events", "alertname=KpiDeadLetters"], "tickets"),
    ],
)
def test_each_alert_reaches_its_receiver(labels: list[str], receiver: str) -> None:
    routed = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.strip() == receiver


def test_inhibitions_silence_what_a_down_worker_or_a_queue_page_causes() -> None:
    rules = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    down = next(r for r in rules if 'alertname="KpiWorkerDown"' in r["source_matchers"])
    pattern = re.fullmatch(r'alertname=~"(.*)"', down["target_matchers"][0])
    assert pattern is not None
    caused = re.compile(pattern.group(1))
    # What a dead worker's partitions cause (their clocks, windows and lag), and only that.
    for name in ("KpiSlaBudgetBurnFast", "KpiTicketsBreaching", "KpiWindowsNotClosing"):
        assert caused.fullmatch(name), name
    for name in ("KpiWorkerDown", "KpiDeadLetters", "KpiCsatFalling"):
        assert not caused.fullmatch(name), name
    page = next(r for r in rules if 'severity="page"' in r["source_matchers"])
    assert page["equal"] == ["queue"]
    assert 'queue=~".+"' in page["source_matchers"]  # a page without a queue silences nothing
