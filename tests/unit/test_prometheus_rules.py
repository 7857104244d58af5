"""deploy/prometheus against the real promtool: the configuration and the rules load,
every alert's unit tests pass (firing and silent cases, labels and annotations), and
every alert carries what an on-call needs (severity, summary, description with the
value, a runbook that exists)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool")
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "rules" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_configuration_and_the_rules_load() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = promtool("check", "rules", *(str(p) for p in RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_every_alert_passes_its_unit_tests() -> None:
    tested = promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS / "tests")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = (PROMETHEUS / "tests" / "alerts_test.yml").read_text()
    untested = [a["alert"] for a in alerts() if f"alertname: {a['alert']}" not in cases]
    assert not untested, f"alerts without a promtool test: {untested}"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_tells_the_on_call_what_and_where_to_look(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in ("page", "ticket")
    assert "for" in rule, f"{name}: no `for:`, it would fire on one bad scrape"
    notes = rule["annotations"]
    assert notes["summary"]
    assert "$value" in notes["description"], f"{name}: the description should show the value"
    runbook = re.fullmatch(r"https://.*/docs/runbooks/(\w+)\.md", notes["runbook_url"])
    assert runbook
    assert runbook.group(1) == name
    text = (ROOT / "docs" / "runbooks" / f"{name}.md").read_text()
    assert "## What to check" in text
    assert "## What to do" in text
    assert f"`{name}`" in (ROOT / "docs" / "alerts.md").read_text()
