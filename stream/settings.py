"""One frozen settings object: defaults in one place, validated at start.

Every field can be set by an environment variable ``KPI_<FIELD>`` (upper case) or
in a TOML file named by ``KPI_CONFIG_FILE``; the environment wins over the file.
docs/configuration.md lists every field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stream.kpi.calendar import BusinessCalendar
from stream.kpi.customers import CustomerRules
from stream.kpi.sla import SlaPolicy
from stream.kpi.windows import parse_duration_ms


@dataclass(frozen=True)
class TopicSpec:
    """A topic the product reads or writes, as the local broker creates it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


class SettingsError(ValueError):
    """Raised with a message that names the bad key and what was wrong with it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KPI_",
        frozen=True,
        extra="forbid",
        env_parse_none_str="",
        # A ValidationError's text would quote the input, sasl_password included.
        hide_input_in_errors=True,
    )

    # --- Kafka ---
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]"
    )
    app_id: str = Field("kpi-stream", description="Faust app id = consumer group id")
    helpdesk_topic: str = "helpdesk.events"
    orders_topic: str = "orders.events"
    indicators_topic: str = "indicators.external"
    kpi_topic: str = "kpi.windows.v1"
    dlq_topic: str = "kpi-stream.dlq"
    partials_topic: str = Field(
        "kpi-stream.window-partials",
        description="internal: per-partition window results on their way to the merge",
    )
    customers_topic: str = Field(
        "kpi-stream.customer-activity",
        description="internal: help-desk and order activities re-keyed by customer (O7, O8, H8)",
    )
    conversion_window: str = Field(
        "7d", description="O7: an order this long after a support contact converts it"
    )
    active_customer_window: str = Field(
        "30d", description="H8: a customer is active this long after each order"
    )
    retention_window: str = Field("30d", description="O8: the window size of customer retention")
    partitions: int = Field(3, ge=1, le=1024, description="partitions of the input topics")
    # --- Kafka connection security (stream/kafka_security.py turns these into client
    # arguments; docs/operations.md "Securing the Kafka connection") ---
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="how clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT "
        "or SASL_SSL (SASL over TLS)",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL_*: the mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
    )
    sasl_username: str | None = Field(None, description="SASL_*: the user name")
    sasl_password: SecretStr | None = Field(
        None, description="SASL_*: the password (never shown in logs, errors or repr)"
    )
    ssl_cafile: Path | None = Field(
        None,
        description="SSL, SASL_SSL: PEM file of the CA certificates the broker's certificate "
        "is checked against; none: the system's CAs",
    )
    ssl_certfile: Path | None = Field(
        None, description="SSL, SASL_SSL: PEM file of the client certificate (mutual TLS)"
    )
    ssl_keyfile: Path | None = Field(
        None,
        description="SSL, SASL_SSL: PEM file of the client certificate's private key "
        "(none: it is in ssl_certfile)",
    )
    ssl_check_hostname: bool = Field(
        True,
        description="SSL, SASL_SSL: the broker's certificate must name the host connected to",
    )
    session_timeout: str = Field(
        "10s",
        description="how long the consumer group waits for a silent worker (kill -9, a lost "
        "node) before its partitions move to the others; within the brokers' "
        "group.min/max.session.timeout.ms (6s-30m by default)",
    )
    fetch_max_wait: str = Field(
        "100ms",
        description="how long a fetch may wait at the broker for records (Faust asks "
        "1.5 s); the consumer keeps one fetch in flight per broker, so a fetch of idle "
        "partitions delays the busy ones by up to this long",
    )
    replication_factor: int = Field(
        1, ge=1, le=5, description="replication of the topics the worker creates (changelogs)"
    )
    store: str = Field(
        "rocksdb://",
        description="Faust table store: rocksdb:// (rocksdict, local state kept across "
        "restarts) or memory:// (state rebuilt from the changelogs at every start)",
    )
    data_dir: Path = Field(Path(".kpi/worker"), description="Faust state directory")

    # --- web (metrics, API) ---
    web_host: str = Field("127.0.0.1", description="address the web server binds to")
    web_port: int = Field(6066, ge=1, le=65535)
    web_auth_user: str | None = Field(
        None,
        description="with web_auth_password: HTTP basic auth on every endpoint but /health",
    )
    web_auth_password: SecretStr | None = Field(
        None, description="the basic-auth password (never shown in logs, errors or repr)"
    )
    web_tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain) of the web server: HTTPS instead of HTTP"
    )
    web_tls_keyfile: Path | None = Field(
        None, description="PEM private key of web_tls_certfile (none: it is in the certfile)"
    )
    web_tls_cafile: Path | None = Field(
        None,
        description="PEM CA certificates the other workers' HTTPS certificates are checked "
        "against when /kpis asks them (none: the system's CAs)",
    )
    web_max_requests_per_second: float = Field(
        100.0,
        gt=0,
        description="requests above this rate wait for their turn (the web server shares "
        "its event loop with the agents: a flood must not starve them)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        # uvloop's timing once let the fault suite catch a rebuilt partition making a
        # window final too early (a bug of the rebuild, fixed; not of the loop).
        "uvloop",
        description="the worker's event loop: asyncio (Python's own) or uvloop (libuv, "
        "faster sockets and callbacks; measured a quarter more events/s)",
    )
    web_render_interval: str = Field(
        "250ms",
        description="/metrics and /status.json are rendered at most once per this interval; "
        "requests in between get the last rendering (rendering runs on the agents' loop)",
    )
    api_windows_kept: int = Field(
        1440,
        ge=1,
        le=1_000_000,
        description="GET /kpis/windows: newest windows kept per KPI, window size and dimensions",
    )

    # --- KPI semantics ---
    # NoDecode: a list comes from the environment as "1m,1h", not as JSON.
    windows: Annotated[tuple[str, ...], NoDecode] = Field(
        ("1m", "1h", "1d"), description="tumbling window sizes of the windowed KPIs"
    )
    grace: str = Field("10m", description="how long after its end a window accepts late events")
    max_future: str = Field(
        "1h",
        description="events whose time is further than this after the worker's clock go to "
        "the dead-letter topic (reason future_timestamp); 'off': no bound",
    )
    sketch_relative_accuracy: float = Field(0.01, gt=0.0, lt=0.5)
    queues: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="queue label values; others are reported as 'other'"
    )
    max_queues: int = Field(
        50, ge=1, le=1000, description="with no queue list: the first N queues seen keep a label"
    )
    live: bool = Field(
        True, description="close windows by the wall clock too (false for replays of history)"
    )
    max_message_bytes: int = Field(1_000_000, ge=1024)
    sla_first_response: str = Field(
        "urgent=1h,high=4h,normal=24h,low=48h",
        description="H3 first-response targets per priority",
    )
    sla_resolution: str = Field(
        "urgent=48h,high=48h,normal=48h,low=48h", description="H5 resolution targets per priority"
    )
    sla_warn: str = Field("15m", description="horizon of the 'will breach soon' gauge")
    sla_business_hours: str = Field(
        "",
        description="SLA clocks count only these hours, e.g. 'mon-fri 08:00-17:00; sat "
        "10:00-14:00'; empty: around the clock",
    )
    sla_timezone: str = Field("UTC", description="IANA time zone of the business hours")
    sla_holidays: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="dates (YYYY-MM-DD) without business hours"
    )
    sla_priority: Literal["initial", "current"] = Field(
        "initial",
        description="the priority whose target applies: when the clock started, or the "
        "ticket's current one",
    )
    ticket_retention: str = Field(
        "7d",
        description="how long (event time) a closed ticket's state is kept: its dedupe horizon",
    )
    order_retention: str = Field(
        "30d",
        description="how long (event time) after its newest event an order's state is kept: "
        "its dedupe horizon, and how late a delivery may still be joined to its shipment",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("KPI_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("windows", "queues", "sla_holidays", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        # Environment variables carry lists as "1m,1h"; TOML carries real lists.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_durations(self) -> Settings:
        durations = (
            *self.windows,
            self.grace,
            self.sla_warn,
            self.ticket_retention,
            self.session_timeout,
            self.web_render_interval,
            self.fetch_max_wait,
        )
        customer = (self.conversion_window, self.active_customer_window, self.retention_window)
        for text in (*durations, self.order_retention, *customer):
            parse_duration_ms(text)  # raises ValueError naming the bad text
        _ = self.max_future_ms
        parse_targets(self.sla_first_response)
        parse_targets(self.sla_resolution)
        self.business_calendar()  # raises CalendarError (a ValueError) naming the problem
        if not self.windows:
            raise ValueError("windows: at least one window size is needed")
        longest = max(parse_duration_ms(w) for w in self.windows)
        if parse_duration_ms(self.ticket_retention) < longest + parse_duration_ms(self.grace):
            # Windows that are not final are rebuilt from the tickets after a restart: a
            # ticket must outlive every window it contributes to.
            raise ValueError(
                f"ticket_retention {self.ticket_retention!r} must be at least the longest "
                f"window plus the grace period ({self.windows} + {self.grace!r})"
            )
        if parse_duration_ms(self.order_retention) < longest + parse_duration_ms(self.grace):
            raise ValueError(
                f"order_retention {self.order_retention!r} must be at least the longest "
                f"window plus the grace period ({self.windows} + {self.grace!r})"
            )
        return self

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        # Messages name the setting and never carry the password.
        protocol = self.security_protocol
        sasl = protocol.startswith("SASL_")
        tls = protocol in ("SSL", "SASL_SSL")
        if sasl:
            if not self.sasl_username:
                raise ValueError(f"sasl_username: needed with security_protocol {protocol}")
            if self.sasl_password is None or not self.sasl_password.get_secret_value():
                raise ValueError(f"sasl_password: needed with security_protocol {protocol}")
        else:
            for name in ("sasl_username", "sasl_password"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name} is set but security_protocol {protocol} does not use SASL "
                        "(SASL_PLAINTEXT or SASL_SSL do)"
                    )
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        for name, path in files.items():
            if path is None:
                continue
            if not tls:
                raise ValueError(
                    f"{name} is set but security_protocol {protocol} does not use TLS "
                    "(SSL or SASL_SSL do)"
                )
            if not path.is_file():
                raise ValueError(f"{name}: {path} does not exist or is not a file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set without ssl_certfile (the client certificate)")
        return self

    @model_validator(mode="after")
    def _check_web_security(self) -> Settings:
        if (self.web_auth_user is None) != (self.web_auth_password is None):
            raise ValueError("web_auth_user and web_auth_password: set both or neither")
        if self.web_auth_user is not None and ":" in self.web_auth_user:
            raise ValueError("web_auth_user: a basic-auth user name cannot contain ':'")
        files = {
            "web_tls_certfile": self.web_tls_certfile,
            "web_tls_keyfile": self.web_tls_keyfile,
            "web_tls_cafile": self.web_tls_cafile,
        }
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: {path} does not exist or is not a file")
        if self.web_tls_keyfile is not None and self.web_tls_certfile is None:
            raise ValueError("web_tls_keyfile is set without web_tls_certfile")
        return self

    # --- derived values ---
    @property
    def window_sizes_ms(self) -> tuple[int, ...]:
        return tuple(parse_duration_ms(text) for text in self.windows)

    @property
    def ticket_retention_ms(self) -> int:
        return parse_duration_ms(self.ticket_retention)

    def customer_rules(self) -> CustomerRules:
        return CustomerRules(
            conversion_ms=parse_duration_ms(self.conversion_window),
            active_ms=parse_duration_ms(self.active_customer_window),
            retention_window_ms=parse_duration_ms(self.retention_window),
        )

    @property
    def customer_window_sizes_ms(self) -> tuple[int, ...]:
        """The customer windows: the configured sizes and the retention window (O8)."""
        retention = parse_duration_ms(self.retention_window)
        sizes = self.window_sizes_ms
        return sizes if retention in sizes else (*sizes, retention)

    @property
    def order_retention_ms(self) -> int:
        return parse_duration_ms(self.order_retention)

    @property
    def grace_ms(self) -> int:
        return parse_duration_ms(self.grace)

    @property
    def web_render_interval_seconds(self) -> float:
        return parse_duration_ms(self.web_render_interval) / 1000

    @property
    def fetch_max_wait_ms(self) -> int:
        return parse_duration_ms(self.fetch_max_wait)

    @property
    def session_timeout_seconds(self) -> float:
        return parse_duration_ms(self.session_timeout) / 1000

    @property
    def max_future_ms(self) -> int | None:
        if self.max_future.strip().lower() == "off":
            return None
        return parse_duration_ms(self.max_future)

    def business_calendar(self) -> BusinessCalendar | None:
        if not self.sla_business_hours.strip():
            return None
        return BusinessCalendar.parse(self.sla_business_hours, self.sla_timezone, self.sla_holidays)

    def sla_policy(self) -> SlaPolicy:
        return SlaPolicy(
            first_response_ms=parse_targets(self.sla_first_response),
            resolution_ms=parse_targets(self.sla_resolution),
            warn_ms=parse_duration_ms(self.sla_warn),
            calendar=self.business_calendar(),
            priority_rule=self.sla_priority,
        )

    @property
    def broker_url(self) -> str:
        """The bootstrap servers in Faust's URL form."""
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(","))

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic the product reads or writes, with its partitions and config."""
        return [
            TopicSpec(self.helpdesk_topic, self.partitions),
            TopicSpec(self.orders_topic, self.partitions),
            TopicSpec(self.indicators_topic, 1),
            TopicSpec(self.kpi_topic, 1, {"cleanup.policy": "compact"}),
            TopicSpec(self.dlq_topic, 1, {"retention.ms": str(14 * 24 * 3600 * 1000)}),
            # One partition: the merge of a window sees every partition's partials in order.
            TopicSpec(self.partials_topic, 1, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
            # Keyed by customer: one customer's activities meet on one partition.
            TopicSpec(
                self.customers_topic, self.partitions, {"retention.ms": str(7 * 24 * 3600 * 1000)}
            ),
        ]


def parse_targets(text: str) -> dict[str, int]:
    """'urgent=1h,high=4h,normal=24h,low=48h' -> {priority: milliseconds}."""
    targets: dict[str, int] = {}
    for part in text.split(","):
        name, sep, duration = part.partition("=")
        if not sep or name.strip() not in ("urgent", "high", "normal", "low"):
            raise ValueError(
                f"SLA target {part.strip()!r} is not <priority>=<duration> with priority "
                "urgent, high, normal or low"
            )
        targets[name.strip()] = parse_duration_ms(duration.strip())
    missing = {"urgent", "high", "normal", "low"} - set(targets)
    if missing:
        raise ValueError(f"SLA targets {text!r} miss priorities {sorted(missing)}")
    return targets


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning pydantic's error into one that names each bad key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid kpi-stream settings: {problems}") from None
