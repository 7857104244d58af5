"""The security settings, their validation, and what each Kafka client gets from them
(stream/kafka_security.py). No broker: tests/integration/test_secure_broker.py connects
for real."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from typer.testing import CliRunner

from stream.app import make_app
from stream.cli import app as cli
from stream.export.kpi_feed import KpiTopicFeed
from stream.export.window_store import WindowStore
from stream.kafka_security import (
    KafkaConnectError,
    aiokafka_options,
    check_connection,
    faust_credentials,
    kafka_python_options,
    ssl_context,
)
from stream.local.broker import BrokerError, BrokerSecurity, LocalBroker
from stream.settings import Settings, SettingsError, load_settings
from tests.conftest import free_port
from tests.pki import Pki, make_pki

PASSWORD = "pw-Zq7-never-shown"


@pytest.fixture(autouse=True)
def _no_kpi_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("KPI_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def sasl(
    protocol: str = "SASL_PLAINTEXT", mechanism: str = "SCRAM-SHA-512", **more: Any
) -> Settings:
    return load_settings(
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="kpi",
        sasl_password=PASSWORD,
        **more,
    )


def refused(match: str, **values: Any) -> str:
    with pytest.raises(SettingsError, match=match) as caught:
        load_settings(**values)
    message = str(caught.value)
    assert PASSWORD not in message
    return message


# --- settings ---------------------------------------------------------------------------


def test_plaintext_by_default_and_no_client_gets_security_arguments() -> None:
    settings = load_settings()
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.ssl_check_hostname is True
    assert faust_credentials(settings) is None
    assert aiokafka_options(settings) == {}
    assert kafka_python_options(settings) == {}
    assert ssl_context(settings) is None


def test_the_environment_sets_every_security_field(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    for name, value in {
        "KPI_SECURITY_PROTOCOL": "SASL_SSL",
        "KPI_SASL_MECHANISM": "SCRAM-SHA-256",
        "KPI_SASL_USERNAME": "kpi",
        "KPI_SASL_PASSWORD": PASSWORD,
        "KPI_SSL_CAFILE": str(pki.ca),
        "KPI_SSL_CERTFILE": str(pki.client_cert),
        "KPI_SSL_KEYFILE": str(pki.client_key),
        "KPI_SSL_CHECK_HOSTNAME": "false",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.security_protocol, settings.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == PASSWORD
    assert (settings.ssl_cafile, settings.ssl_keyfile) == (pki.ca, pki.client_key)
    assert settings.ssl_check_hostname is False


def test_the_password_is_in_no_repr_or_str_of_the_settings() -> None:
    settings = sasl()
    for text in (repr(settings), str(settings), repr(settings.model_dump()), str(vars(settings))):
        assert PASSWORD not in text


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_a_user_and_a_password(protocol: str) -> None:
    refused(
        f"sasl_username: needed with security_protocol {protocol}",
        security_protocol=protocol,
        sasl_password=PASSWORD,
    )
    refused(
        f"sasl_password: needed with security_protocol {protocol}",
        security_protocol=protocol,
        sasl_username="kpi",
    )
    refused(
        "sasl_password: needed", security_protocol=protocol, sasl_username="kpi", sasl_password=""
    )


def test_credentials_without_sasl_are_refused_not_ignored() -> None:
    refused(
        "sasl_password is set but security_protocol PLAINTEXT does not use SASL",
        sasl_password=PASSWORD,
    )
    refused(
        "sasl_username is set but security_protocol SSL does not use SASL",
        security_protocol="SSL",
        sasl_username="kpi",
    )


def test_tls_files_must_exist_and_need_a_tls_protocol(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    message = refused(
        "ssl_cafile: .* does not exist", security_protocol="SSL", ssl_cafile=str(missing)
    )
    assert str(missing) in message
    refused(
        "ssl_certfile: .* does not exist",
        security_protocol="SASL_SSL",
        sasl_username="kpi",
        sasl_password=PASSWORD,
        ssl_certfile=str(missing),
    )
    refused(
        "ssl_cafile is set but security_protocol SASL_PLAINTEXT does not use TLS",
        security_protocol="SASL_PLAINTEXT",
        sasl_username="kpi",
        sasl_password=PASSWORD,
        ssl_cafile=str(pki.ca),
    )
    refused(
        "ssl_keyfile is set without ssl_certfile",
        security_protocol="SSL",
        ssl_keyfile=str(pki.client_key),
    )


def test_unknown_protocols_and_mechanisms_are_named() -> None:
    refused("security_protocol", security_protocol="TLS")
    refused("sasl_mechanism", security_protocol="SASL_SSL", sasl_mechanism="GSSAPI")


def test_a_validation_error_of_the_settings_does_not_quote_the_password() -> None:
    with pytest.raises(ValueError, match="sasl_username") as caught:
        Settings(security_protocol="SASL_SSL", sasl_password=PASSWORD)  # type: ignore[arg-type]
    assert PASSWORD not in str(caught.value)


# --- what each client gets ------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_maps_to_each_client(protocol: str, mechanism: str, pki: Pki) -> None:
    tls = {"ssl_cafile": str(pki.ca)} if protocol == "SASL_SSL" else {}
    settings = sasl(protocol, mechanism, **tls)

    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == protocol
    assert credentials.mechanism.value == mechanism
    assert (credentials.username, credentials.password) == ("kpi", PASSWORD)
    assert (credentials.ssl_context is not None) == (protocol == "SASL_SSL")
    assert PASSWORD not in repr(credentials)

    for options in (aiokafka_options(settings), kafka_python_options(settings)):
        assert options["security_protocol"] == protocol
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == "kpi"
        assert options["sasl_plain_password"] == PASSWORD
        assert ("ssl_context" in options) == (protocol == "SASL_SSL")
        # kafka-python logs its whole configuration at debug level.
        assert PASSWORD not in repr(options)
        assert PASSWORD not in str(options)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_and_the_window_store_feed_connect_alike(protocol: str, pki: Pki) -> None:
    # The feed, run as a Faust task, takes the app's credentials through the function
    # Faust builds its own consumers with: it must agree with aiokafka_options.
    if protocol == "SSL":
        settings = load_settings(security_protocol="SSL", ssl_cafile=str(pki.ca))
    else:
        tls = {"ssl_cafile": str(pki.ca)} if protocol == "SASL_SSL" else {}
        settings = sasl(protocol, "PLAIN", **tls)
    app = make_app(settings)
    from_faust = dict(credentials_to_aiokafka_auth(app.conf.broker_credentials))
    ours = aiokafka_options(settings)
    faust_context, our_context = from_faust.pop("ssl_context", None), ours.pop("ssl_context", None)
    assert (faust_context is None) == (our_context is None) == (protocol == "SASL_PLAINTEXT")
    assert {k: v for k, v in from_faust.items() if v is not None} == ours

    feed = KpiTopicFeed(settings.bootstrap_servers, "kpi", WindowStore(10))
    assert feed._options(app)["security_protocol"] == protocol
    assert feed._options(None) == {}
    given = KpiTopicFeed("x:1", "kpi", WindowStore(10), client_options={"security_protocol": "SSL"})
    assert given._options(app) == {"security_protocol": "SSL"}


def test_ssl_maps_to_a_verifying_context_with_the_client_certificate(pki: Pki) -> None:
    settings = load_settings(
        security_protocol="SSL",
        ssl_cafile=str(pki.ca),
        ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(pki.client_key),
    )
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    context = credentials.context
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert any(c["subject"] for c in context.get_ca_certs())
    options = kafka_python_options(settings)
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert make_app(settings).conf.broker_credentials.protocol.value == "SSL"


def test_the_hostname_check_can_be_turned_off_but_not_verification(pki: Pki) -> None:
    settings = load_settings(
        security_protocol="SSL", ssl_cafile=str(pki.ca), ssl_check_hostname=False
    )
    context = ssl_context(settings)
    assert context is not None
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_file_that_is_no_pem_is_named_when_loaded(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=r"ssl_cafile: .*junk\.pem is not a PEM file"):
        ssl_context(load_settings(security_protocol="SSL", ssl_cafile=str(junk)))
    settings = load_settings(
        security_protocol="SSL",
        ssl_cafile=str(pki.ca),
        ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(junk),
    )
    with pytest.raises(SettingsError, match="ssl_certfile/ssl_keyfile"):
        ssl_context(settings)


# --- the connection check -------------------------------------------------------------


@pytest.fixture
def closing_server() -> Iterator[int]:
    """A port that accepts connections and closes them at once (as a listener that
    expects another protocol does)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


def test_the_check_names_a_refused_connection_and_not_the_password() -> None:
    settings = sasl(bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(KafkaConnectError) as caught:
        check_connection(settings, timeout_s=2)
    message = str(caught.value)
    assert "SASL_PLAINTEXT, SCRAM-SHA-512 as user 'kpi'" in message
    assert "connection refused" in message
    assert PASSWORD not in message


def test_the_check_says_what_a_closed_connection_means(closing_server: int) -> None:
    settings = load_settings(bootstrap_servers=f"127.0.0.1:{closing_server}")
    with pytest.raises(KafkaConnectError, match="the broker closed the connection"):
        check_connection(settings, timeout_s=2)


def test_a_command_exits_1_with_the_reason_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KPI_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("KPI_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KPI_SASL_USERNAME", "kpi")
    monkeypatch.setenv("KPI_SASL_PASSWORD", PASSWORD)
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 1
    assert "cannot connect to Kafka" in result.output
    assert PASSWORD not in result.output
    monkeypatch.delenv("KPI_SASL_USERNAME")
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code == 2
    assert "sasl_username: needed" in result.output
    assert PASSWORD not in result.output


# --- the local broker's secured listeners ------------------------------------------------


def test_the_local_broker_adds_secured_listeners_and_keeps_its_plaintext_one(
    pki: Pki, tmp_path: Path
) -> None:
    security = BrokerSecurity(
        ports={"SASL_SSL": 19_001, "SSL": 19_002},
        users={"kpi": PASSWORD},
        certfile=pki.broker_cert,
        keyfile=pki.broker_key,
        client_cafile=pki.ca,
    )
    broker = LocalBroker(19_000, 19_003, tmp_path / "kafka", security=security)
    properties = broker._write_config()
    config = dict(line.split("=", 1) for line in properties.read_text().splitlines() if line)
    assert config["listeners"] == (
        "PLAINTEXT://127.0.0.1:19000,SASL_SSL://127.0.0.1:19001,SSL://127.0.0.1:19002,"
        "CONTROLLER://127.0.0.1:19003"
    )
    assert config["inter.broker.listener.name"] == "PLAINTEXT"
    assert config["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
    )
    assert config["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == (
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    )
    assert f'user_kpi="{PASSWORD}"' in config["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert config["listener.name.ssl.ssl.client.auth"] == "required"
    assert "listener.name.sasl_ssl.ssl.client.auth" not in config
    assert config["listener.name.sasl_ssl.ssl.keystore.key"].startswith(
        "-----BEGIN PRIVATE KEY-----\\n"
    )
    assert properties.stat().st_mode & 0o077 == 0  # it holds passwords
    assert broker.secure_bootstrap("SSL") == "127.0.0.1:19002"
    assert broker._scram_arguments() == [
        f"--add-scram=SCRAM-SHA-256=[name=kpi,password={PASSWORD}]",
        f"--add-scram=SCRAM-SHA-512=[name=kpi,password={PASSWORD}]",
    ]
    assert PASSWORD not in broker._masked(f"bad argument password={PASSWORD}")

    plain = LocalBroker(19_000, 19_003, tmp_path / "plain")._write_config().read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19000,CONTROLLER://127.0.0.1:19003\n" in plain
    assert "listener.name." not in plain


def test_the_local_broker_refuses_unusable_security(pki: Pki) -> None:
    with pytest.raises(BrokerError, match="certfile and keyfile"):
        BrokerSecurity(ports={"SSL": 1})
    with pytest.raises(BrokerError, match="at least one user"):
        BrokerSecurity(ports={"SASL_PLAINTEXT": 1})
    with pytest.raises(BrokerError, match="SASL user 'kpi'") as caught:
        BrokerSecurity(ports={"SASL_PLAINTEXT": 1}, users={"kpi": PASSWORD + ",x"})
    assert PASSWORD not in str(caught.value)
