"""Every client of the product against a broker that wants TLS and SASL.

A broker of its own (its ports, its state directory) with three secured listeners:
SASL_SSL and SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and SSL that requires a
client certificate, all with certificates made here by a throwaway CA (tests/pki.py).
For each way in: the topics are created, a real worker runs, `kpi replay` sends valid
events and a malformed line, `kpi indicator set` one indicator, `kpi report` reads the
KPI topic, and /metrics shows the events counted and the bad line rejected. A wrong
password and a missing client certificate are refused with a clear message. No password
may appear in any log, output or exposition.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.kafka_security import kafka_python_options
from stream.kpi.timefmt import format_rfc3339_ms
from stream.local.broker import BrokerSecurity, LocalBroker, SecureProtocol, create_topics
from stream.settings import Settings
from tests.conftest import free_port
from tests.pki import Pki, make_pki
from tests.scrape import samples, total

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

# Distinct, greppable passwords; none may show up anywhere the product writes.
USERS = {"kpi-scram": "scram-Pw-9f2d-secret", "kpi-plain": "plain-Pw-4c1e-secret"}
WRONG_PASSWORD = "wrong-Pw-77ab-secret"
PASSWORDS = (*USERS.values(), WRONG_PASSWORD)


@dataclass
class SecureBroker:
    broker: LocalBroker
    pki: Pki


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(folder / "pki")
    security = BrokerSecurity(
        ports={"SASL_SSL": free_port(), "SASL_PLAINTEXT": free_port(), "SSL": free_port()},
        users=USERS,
        certfile=pki.broker_cert,
        keyfile=pki.broker_key,
        client_cafile=pki.ca,
    )
    broker = LocalBroker(free_port(), free_port(), folder / "state", security=security)
    try:
        broker.up()
        yield SecureBroker(broker, pki)
    finally:
        broker.down()


def security_env(
    secure: SecureBroker, protocol: SecureProtocol, mechanism: str | None, user: str | None
) -> dict[str, str]:
    """The KPI_* security variables of one way in."""
    env = {
        "KPI_BOOTSTRAP_SERVERS": secure.broker.secure_bootstrap(protocol),
        "KPI_SECURITY_PROTOCOL": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        env["KPI_SSL_CAFILE"] = str(secure.pki.ca)
    if protocol == "SSL":  # this listener wants a client certificate
        env["KPI_SSL_CERTFILE"] = str(secure.pki.client_cert)
        env["KPI_SSL_KEYFILE"] = str(secure.pki.client_key)
    if mechanism is not None and user is not None:
        env["KPI_SASL_MECHANISM"] = mechanism
        env["KPI_SASL_USERNAME"] = user
        env["KPI_SASL_PASSWORD"] = USERS[user]
    return env


def worker_env(security: dict[str, str], name: str, tmp_path: Path) -> dict[str, str]:
    prefix = f"sec-{name}-{os.getpid()}"
    return {
        **security,
        "KPI_APP_ID": f"kpi-test-{prefix}",
        "KPI_HELPDESK_TOPIC": f"{prefix}.helpdesk.events",
        "KPI_ORDERS_TOPIC": f"{prefix}.orders.events",
        "KPI_INDICATORS_TOPIC": f"{prefix}.indicators.external",
        "KPI_KPI_TOPIC": f"{prefix}.kpi.windows.v1",
        "KPI_DLQ_TOPIC": f"{prefix}.dlq",
        "KPI_PARTIALS_TOPIC": f"{prefix}.window-partials",
        "KPI_CUSTOMERS_TOPIC": f"{prefix}.customer-activity",
        "KPI_DATA_DIR": str(tmp_path / "worker"),
        "KPI_STORE": "memory://",
        "KPI_WEB_PORT": str(free_port()),
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k[4:].lower(): v for k, v in env.items()})  # type: ignore[arg-type]


def kpi(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A `kpi` command with only these KPI_* variables (none inherited)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **env},
        check=False,
    )


def flat(text: str) -> str:
    """Rich wraps its messages at 80 columns: compare words, and search for secrets
    with no whitespace at all (a password split by a line break is still found)."""
    return " ".join(text.split())


def assert_no_password(where: str, text: str) -> None:
    squeezed = "".join(text.split())
    for password in PASSWORDS:
        assert password not in squeezed, f"a password appears in {where}"


def events_file(path: Path) -> Path:
    """Three tickets, a reply and one line that is not JSON, as `kpi replay` reads them."""
    now = int(time.time() * 1000) - 60_000

    def event(n: int, kind: str, ticket: str, **fields: Any) -> bytes:
        return orjson.dumps(
            {
                "event_id": f"e{n}",
                "type": kind,
                "occurred_at": format_rfc3339_ms(now + n * 1000),
                "ticket_id": ticket,
                "customer_id": f"c-{ticket}",
                "schema_version": 1,
                **fields,
            }
        )

    created = {"queue": "billing", "priority": "normal", "channel": "email"}
    lines = [event(n, "ticket.created", f"T{n}", **created) for n in range(3)]
    lines.append(event(3, "ticket.replied", "T0", author="agent", public=True, agent_id="a-1"))
    lines.append(b"{not json")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def by_type(metrics: dict[str, Any], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in metrics.get(name, []):
        out[labels[label]] = out.get(labels[label], 0.0) + value
    return out


WAYS_IN = [
    pytest.param("SASL_SSL", "SCRAM-SHA-512", "kpi-scram", id="SASL_SSL-SCRAM-SHA-512"),
    pytest.param("SASL_PLAINTEXT", "PLAIN", "kpi-plain", id="SASL_PLAINTEXT-PLAIN"),
    pytest.param("SSL", None, None, id="SSL-client-certificate"),
]


@pytest.mark.parametrize(("protocol", "mechanism", "user"), WAYS_IN)
def test_every_client_works_through_a_secured_listener(
    secure_broker: SecureBroker,
    start_worker: Any,
    tmp_path: Path,
    protocol: SecureProtocol,
    mechanism: str | None,
    user: str | None,
) -> None:
    security = security_env(secure_broker, protocol, mechanism, user)
    env = worker_env(security, protocol.lower(), tmp_path)
    settings = settings_of(env)
    # Topic creation, as `kpi kafka up` does it, through the secured listener.
    created = create_topics(
        settings.bootstrap_servers,
        settings.topic_specs(),
        client_options=kafka_python_options(settings),
    )
    assert settings.helpdesk_topic in created

    worker = start_worker(env)
    outputs: list[tuple[str, str]] = []

    replay = kpi("replay", str(events_file(tmp_path / "events.jsonl")), env=env)
    outputs.append(("kpi replay", replay.stdout + replay.stderr))
    assert replay.returncode == 0, replay.stderr
    assert "replayed 5 messages" in flat(replay.stderr)
    assert "failed sends: 0" in flat(replay.stderr)

    indicator = kpi(
        "indicator", "set", "employee_turnover", "0.042", "--unit", "ratio", "--period", "2026-11",
        env=env,
    )  # fmt: skip
    outputs.append(("kpi indicator set", indicator.stdout + indicator.stderr))
    assert indicator.returncode == 0, indicator.stderr
    assert indicator.stdout.startswith(f"sent to {settings.indicators_topic} ")

    deadline = time.monotonic() + 90
    while True:
        text = worker.metrics_text()
        metrics = samples(text)
        events = by_type(metrics, "kpistream_events_total", "type")
        rejected = by_type(metrics, "kpistream_events_rejected_total", "reason")
        feed_reading = "kpistream_api_kpi_topic_lag_records" in metrics
        if (
            events.get("ticket.created") == 3
            and events.get("ticket.replied") == 1
            and events.get("indicator.reported") == 1
            and rejected.get("invalid_json") == 1
            and feed_reading
        ):
            break
        assert time.monotonic() < deadline, (
            f"events {events}, rejected {rejected}, window-store feed reading: "
            f"{feed_reading}\n{worker.log_tail()}"
        )
        time.sleep(0.5)
    assert total(metrics, "kpistream_events_rejected_total") == 1

    # The simulator's producer, then the report's consumer (the KPI topic may be empty).
    simulate = kpi("simulate", "--no-pace", "--max-messages", "5", env=env)
    outputs.append(("kpi simulate", simulate.stdout + simulate.stderr))
    assert simulate.returncode == 0, simulate.stderr
    assert "sent 5 messages" in flat(simulate.stderr)
    report = kpi("report", "--format", "jsonl", env=env)
    outputs.append(("kpi report", report.stdout + report.stderr))
    assert report.returncode == 0, report.stderr

    outputs.append(("/metrics", worker.metrics_text()))
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    # The window-store feed (its own aiokafka consumer) authenticated like the worker.
    assert "into the window store failed" not in log
    for where, text in [*outputs, ("the worker log", log)]:
        assert_no_password(where, text)


def test_a_wrong_password_is_refused_with_a_clear_message(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    events = events_file(tmp_path / "events.jsonl")
    for protocol, mechanism, user in (
        ("SASL_SSL", "SCRAM-SHA-512", "kpi-scram"),
        ("SASL_PLAINTEXT", "PLAIN", "kpi-plain"),
    ):
        env = {
            **worker_env(security_env(secure_broker, protocol, mechanism, user), "x", tmp_path),
            "KPI_SASL_PASSWORD": WRONG_PASSWORD,
        }
        for args in (["replay", str(events)], ["report"], ["worker"]):
            started = time.monotonic()
            result = kpi(*args, env=env, timeout=60)
            said = flat(result.stdout + result.stderr)
            assert result.returncode == 1, said
            assert f"cannot connect to Kafka ({protocol}, {mechanism} as user '{user}')" in said
            assert "the broker refused the SASL credentials" in said
            assert "Traceback" not in said
            assert time.monotonic() - started < 30, "refused at once, not after a timeout"
            assert_no_password(f"kpi {args[0]} with {protocol}", result.stdout + result.stderr)
        # The right user with another user's password: refused too.
        other = next(u for u in USERS if u != user)
        result = kpi("report", env={**env, "KPI_SASL_PASSWORD": USERS[other]})
        assert result.returncode == 1
        assert "refused the SASL credentials" in flat(result.stderr)
        assert_no_password("kpi report", result.stdout + result.stderr)


def test_tls_without_the_client_certificate_or_the_ca_is_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    env = security_env(secure_broker, "SSL", None, None)
    without_cert = {
        k: v for k, v in env.items() if k not in ("KPI_SSL_CERTFILE", "KPI_SSL_KEYFILE")
    }
    result = kpi("report", env=without_cert)
    assert result.returncode == 1
    assert "a client certificate (ssl_certfile)" in flat(result.stderr)

    # The system's CAs do not know the test CA: the broker's certificate is refused.
    sasl = security_env(secure_broker, "SASL_SSL", "SCRAM-SHA-512", "kpi-scram")
    del sasl["KPI_SSL_CAFILE"]
    result = kpi("report", env=sasl)
    assert result.returncode == 1
    said = flat(result.stderr)
    assert "the broker's TLS certificate was not accepted" in said
    assert "ssl_cafile" in said
    assert_no_password("kpi report", result.stdout + result.stderr)
