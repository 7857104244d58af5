from pathlib import Path

import pytest

from stream.settings import SettingsError, load_settings


def test_defaults_describe_the_local_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("KPI_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.web_host == "127.0.0.1"
    assert settings.web_port == 6066
    assert settings.window_sizes_ms == (60_000, 3_600_000, 86_400_000)
    assert settings.grace_ms == 600_000
    names = [spec.name for spec in settings.topic_specs()]
    assert names == [
        "helpdesk.events",
        "orders.events",
        "indicators.external",
        "kpi.windows.v1",
        "kpi-stream.dlq",
        "kpi-stream.window-partials",
        "kpi-stream.customer-activity",
    ]


def test_environment_overrides_and_lists_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPI_WINDOWS", "1m, 1h,1d")
    monkeypatch.setenv("KPI_QUEUES", "billing,technical")
    monkeypatch.setenv("KPI_WEB_PORT", "7000")
    settings = load_settings()
    assert settings.windows == ("1m", "1h", "1d")
    assert settings.queues == ("billing", "technical")
    assert settings.web_port == 7000


def test_toml_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "kpi.toml"
    config.write_text('grace = "15m"\nqueues = ["a", "b"]\nweb_port = 7001\n')
    monkeypatch.setenv("KPI_CONFIG_FILE", str(config))
    monkeypatch.setenv("KPI_WEB_PORT", "7002")
    settings = load_settings()
    assert settings.grace_ms == 15 * 60_000
    assert settings.queues == ("a", "b")
    assert settings.web_port == 7002


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("KPI_WEB_PORT", "99999", "web_port"),
        ("KPI_GRACE", "ten minutes", "ten minutes"),
        ("KPI_PARTITIONS", "0", "partitions"),
        ("KPI_SKETCH_RELATIVE_ACCURACY", "2", "sketch_relative_accuracy"),
    ],
)
def test_bad_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_sla_targets_parse_and_bad_ones_name_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPI_SLA_FIRST_RESPONSE", "urgent=30m,high=2h,normal=8h,low=1d")
    policy = load_settings().sla_policy()
    assert policy.first_response_ms["urgent"] == 30 * 60_000
    assert policy.resolution_ms["low"] == 48 * 3_600_000
    monkeypatch.setenv("KPI_SLA_FIRST_RESPONSE", "urgent=30m,critical=1h")
    with pytest.raises(SettingsError, match="critical"):
        load_settings()


def test_ticket_retention_must_outlive_the_longest_window() -> None:
    with pytest.raises(SettingsError, match="ticket_retention"):
        load_settings(windows=("1m", "1d"), grace="10m", ticket_retention="1d")
    assert load_settings(windows=("1m", "1h"), ticket_retention="1d").ticket_retention_ms


def test_business_hours_are_validated_at_start_naming_the_problem() -> None:
    with pytest.raises(SettingsError, match="not a known IANA zone"):
        load_settings(sla_business_hours="mon-fri 08:00-17:00", sla_timezone="Nowhere/City")
    policy = load_settings(
        sla_business_hours="mon-fri 08:00-17:00",
        sla_timezone="Europe/Copenhagen",
        sla_holidays="2026-12-24,2026-12-25",
    ).sla_policy()
    assert policy.calendar is not None
    assert len(policy.calendar.holidays) == 2
