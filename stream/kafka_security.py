"""The one place that turns the security settings into Kafka client arguments.

Three client libraries talk to Kafka here: Faust (the worker's consumer, producer and
topic creation, through aiokafka), aiokafka itself (the window store's reader,
stream/export/kpi_feed.py) and kafka-python (the feed of `kpi simulate`, `kpi replay`
and `kpi indicator set`, the consumer of `kpi report`, the admin client that creates the
topics). Each gets its arguments from a function of this module, so that all of them
connect the same way: the same protocol, the same SASL user, one TLS context built by
`ssl_context`.

The password stays a `SecretStr` in the settings; here it becomes a `str` whose repr is
masked, because kafka-python logs its whole configuration at debug level.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from stream.settings import Settings, SettingsError

__all__ = [
    "KafkaConnectError",
    "aiokafka_options",
    "check",
    "check_connection",
    "faust_credentials",
    "kafka_python_options",
    "ssl_context",
]

MASK = "**********"


class _Password(str):
    """The password as the clients need it (a str), shown as a mask by repr: a client
    that logs its configuration dict shows the mask, not the password."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def uses_tls(settings: Settings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context of SSL and SASL_SSL (None otherwise): the broker's
    certificate is verified against `ssl_cafile` (or the system's CAs), its name checked
    unless `ssl_check_hostname` is false; `ssl_certfile`/`ssl_keyfile` are the client's
    own certificate for mutual TLS.

    Raises SettingsError naming the setting whose file cannot be loaded.
    """
    if not uses_tls(settings):
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context: ssl.SSLContext = create_ssl_context(cafile=settings.ssl_cafile)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"invalid kpi-stream settings: ssl_cafile: {settings.ssl_cafile} is not a PEM "
            f"file of CA certificates ({exc})"
        ) from None
    if settings.ssl_certfile is not None:
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(
                f"invalid kpi-stream settings: ssl_certfile/ssl_keyfile: {settings.ssl_certfile}"
                f" with the key {settings.ssl_keyfile or '(in the same file)'} is not a PEM "
                f"certificate and its unencrypted private key ({exc})"
            ) from None
    # Verification of the chain stays on; only the name check can be turned off (for a
    # broker reached by an address its certificate does not list).
    context.check_hostname = settings.ssl_check_hostname
    return context


def check(settings: Settings) -> None:
    """Load the TLS files once, so a bad one stops a command at start with its name."""
    ssl_context(settings)


def _password(settings: Settings) -> _Password:
    secret = settings.sasl_password
    return _Password(secret.get_secret_value() if secret is not None else "")


def faust_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials`: None (PLAINTEXT), faust.SSLCredentials (SSL) or
    faust.SASLCredentials (SASL_PLAINTEXT; SASL_SSL when it carries a TLS context).

    Faust hands them to every aiokafka client it builds (consumer, producer, the client
    that creates the changelog topics); the broker URL keeps its kafka:// scheme.
    """
    import faust

    context = ssl_context(settings)
    if uses_sasl(settings):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=_password(settings),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _client_options(settings: Settings) -> dict[str, Any]:
    # aiokafka and kafka-python name these arguments alike.
    if settings.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if uses_sasl(settings):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = _password(settings)
    return options


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of an aiokafka client (AIOKafkaConsumer, AIOKafkaProducer);
    empty for PLAINTEXT."""
    return _client_options(settings)


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of a kafka-python client (KafkaProducer, KafkaConsumer,
    KafkaAdminClient); empty for PLAINTEXT."""
    return _client_options(settings)


class KafkaConnectError(RuntimeError):
    """The brokers could not be reached, or refused the connection or the credentials;
    the message says which and why, never the password."""


def describe(settings: Settings) -> str:
    """How the clients connect, for messages: protocol, mechanism and user."""
    text: str = settings.security_protocol
    if uses_sasl(settings):
        text += f", {settings.sasl_mechanism} as user {settings.sasl_username!r}"
    return text


def _reason(exc: BaseException, settings: Settings, timeout_s: float) -> str:
    from aiokafka.errors import (
        KafkaConnectionError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    if isinstance(exc, SaslAuthenticationFailed):
        return f"the broker refused the SASL credentials ({exc})"
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"the broker does not offer SASL mechanism {settings.sasl_mechanism} ({exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate was not accepted: {exc.verify_message} "
            "(ssl_cafile names the CA that signed it; ssl_check_hostname)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listens there)"
    if isinstance(exc, KafkaConnectionError | ConnectionResetError):
        return (
            "the broker closed the connection: its listener expects another "
            "security_protocol or SASL mechanism, or a client certificate (ssl_certfile)"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {timeout_s:.0f} s (a TLS listener reached without TLS "
            "looks like this too)"
        )
    return f"{type(exc).__name__}: {exc}"


async def _connect_once(host: str, port: int, settings: Settings, timeout_s: float) -> None:
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    async def attempt() -> None:
        conn = await create_conn(
            host,
            port,
            client_id="kpi-stream-check",
            request_timeout_ms=int(timeout_s * 1000),
            **aiokafka_options(settings),
        )
        try:
            # A listener that expects SASL accepts the TCP (and TLS) connection and
            # closes it at the first request that is not SASL.
            await conn.send(MetadataRequest([]))
        finally:
            conn.close()

    await asyncio.wait_for(attempt(), timeout_s)


def check_connection(settings: Settings, timeout_s: float = 10.0) -> None:
    """Connect to a bootstrap server and authenticate as the clients will, in a few
    seconds; raise KafkaConnectError saying why not.

    kafka-python only reports "Unable to bootstrap" after its timeout when the broker
    refuses the credentials; this check names the cause at once.
    """
    problems: list[str] = []
    for server in settings.bootstrap_servers.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep:  # no port: Kafka's default
            host, port = port, "9092"
        try:
            asyncio.run(_connect_once(host, int(port), settings, timeout_s))
            return
        except Exception as exc:  # every failure is reported, with its cause
            problems.append(f"{server.strip()}: {_reason(exc, settings, timeout_s)}")
    message = f"cannot connect to Kafka ({describe(settings)}): " + "; ".join(problems)
    password = _password(settings)
    if password:  # no library puts it in an error message; this makes sure
        message = message.replace(password, MASK)
    raise KafkaConnectError(message)
