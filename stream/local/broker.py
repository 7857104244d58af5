"""A local single-node Apache Kafka broker (KRaft), for the demo and the tests.

No Docker here: the broker jars come from Maven Central (org.apache.kafka:kafka_2.13 and
its runtime dependencies, fetched once with Maven into a cache), and the broker runs as
a plain `java` process on loopback, recorded by its pid so `down` stops exactly it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stream.settings import TopicSpec

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.kpi-stream</groupId>
  <artifactId>local-kafka</artifactId>
  <version>{KAFKA_VERSION}</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <!-- Kafka 4.x logs through SLF4J; log4j2 is its binding (slf4j-api 2.x to bind). -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{SLF4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        Pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
        additivity: false
        AppenderRef:
          - ref: STDOUT
"""


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def cache_dir() -> Path:
    base = os.environ.get("KPI_KAFKA_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "kpi-stream"


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _admin(bootstrap: str, timeout_s: float = 10, **client_options: Any) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="kpi-stream-local",
        request_timeout_ms=int(timeout_s * 1000),
        **client_options,
    )


def list_topics(bootstrap: str, *, client_options: Mapping[str, Any] | None = None) -> list[str]:
    """The topics on the broker (internal ones left out). `client_options`: the admin
    client's security arguments (stream.kafka_security.kafka_python_options)."""
    admin = _admin(bootstrap, **(client_options or {}))
    try:
        return sorted(t for t in admin.list_topics() if not t.startswith("__"))  # type: ignore[attr-defined]
    finally:
        admin.close()  # type: ignore[attr-defined]


def create_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    timeout_s: float = 30,
    *,
    client_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    An existing topic with fewer partitions than asked is an error: the tables are
    co-partitioned with their input topic and would not line up. `client_options`: the
    admin client's security arguments (stream.kafka_security.kafka_python_options).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

    wanted = list(specs)
    admin = _admin(bootstrap, timeout_s, **(client_options or {}))
    try:
        existing = set(admin.list_topics())  # type: ignore[attr-defined]
        missing = [spec for spec in wanted if spec.name not in existing]
        if missing:
            # A topic created concurrently by someone else is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(  # type: ignore[attr-defined]
                    [
                        NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.config)
                        for spec in missing
                    ],
                    timeout_ms=int(timeout_s * 1000),
                )
        present = [spec for spec in wanted if spec.name in existing]
        if present:
            described = admin.describe_topics([spec.name for spec in present])  # type: ignore[attr-defined]
            # kafka-python 3 says "name"; 2.x said "topic".
            partitions = {d.get("name", d.get("topic")): len(d["partitions"]) for d in described}
            for spec in present:
                if partitions.get(spec.name, spec.partitions) < spec.partitions:
                    raise BrokerError(
                        f"topic {spec.name} exists with {partitions[spec.name]} partitions, "
                        f"{spec.partitions} are needed (KPI_PARTITIONS)"
                    )
        return [spec.name for spec in missing]
    finally:
        admin.close()  # type: ignore[attr-defined]


SecureProtocol = Literal["SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# Characters the JAAS and --add-scram syntaxes would read as their own.
_UNSAFE = set('"\\,=[];') | {chr(c) for c in range(33)}


@dataclass(frozen=True)
class BrokerSecurity:
    """Secured listeners beside the plaintext one, for testing secured clients.

    Each protocol in `ports` gets a listener of that name on 127.0.0.1:<port>. The SASL
    listeners accept `users` (name -> password) by PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512;
    the SCRAM credentials are written when the storage is formatted, so a state directory
    keeps the users of its first start. The TLS listeners present `certfile` (PEM: the
    broker's certificate, then the chain) with `keyfile` (its unencrypted PEM private
    key); with `client_cafile`, the SSL listener requires a client certificate signed by
    it (mutual TLS). The controller and inter-broker listeners stay plaintext on loopback.
    """

    ports: Mapping[SecureProtocol, int]
    users: Mapping[str, str] = field(default_factory=dict)
    certfile: Path | None = None
    keyfile: Path | None = None
    client_cafile: Path | None = None

    def __post_init__(self) -> None:
        protocols = set(self.ports)
        unknown = protocols - {"SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if unknown:
            raise BrokerError(f"unknown secured listener protocols: {sorted(unknown)}")
        if protocols & {"SSL", "SASL_SSL"} and (self.certfile is None or self.keyfile is None):
            raise BrokerError("a TLS listener needs the broker's certfile and keyfile")
        if protocols & {"SASL_PLAINTEXT", "SASL_SSL"} and not self.users:
            raise BrokerError("a SASL listener needs at least one user")
        for name, password in self.users.items():
            if not name or not password or _UNSAFE & set(name + password):
                # The message names the user, never the password.
                raise BrokerError(
                    f"SASL user {name!r}: names and passwords must be non-empty, without "
                    'spaces or any of " \\ , = [ ] ;'
                )


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    log_path: Path
    topics: list[str] = field(default_factory=list)


class LocalBroker:
    """One broker+controller on 127.0.0.1:<port>, its controller on <controller_port>.

    With `security`, secured listeners too (BrokerSecurity); the plaintext listener on
    <port> stays, for the broker's own readiness check and inter-broker traffic.
    """

    def __init__(
        self,
        port: int = 9092,
        controller_port: int | None = None,
        state_dir: Path | None = None,
        heap_mb: int = 512,
        security: BrokerSecurity | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port or port + 1
        self.state_dir = (state_dir or Path(".kpi") / f"kafka-{port}").resolve()
        self.heap_mb = heap_mb
        self.security = security

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def secure_bootstrap(self, protocol: SecureProtocol) -> str:
        """The address of the secured listener of `protocol`."""
        if self.security is None or protocol not in self.security.ports:
            raise BrokerError(f"this broker has no {protocol} listener")
        return f"127.0.0.1:{self.security.ports[protocol]}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "broker.log"

    @property
    def _pid_path(self) -> Path:
        return self.state_dir / "broker.pid"

    # --- jars ---------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """The directory of the broker's jars, fetched from Maven Central the first time."""
        libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
        if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            return libs
        for tool, package in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")):
            if shutil.which(tool) is None:
                raise BrokerError(
                    f"`{tool}` is needed for the local Kafka broker: install {package}"
                )
        libs.parent.mkdir(parents=True, exist_ok=True)
        # Download into a temporary directory and rename it into place, so an
        # interrupted download never leaves a half-filled cache behind.
        with tempfile.TemporaryDirectory(dir=libs.parent, prefix=".fetch-") as tmp:
            pom = Path(tmp) / "pom.xml"
            pom.write_text(_POM)
            result = subprocess.run(
                [
                    "mvn",
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
                    f"-DoutputDirectory={Path(tmp) / 'libs'}",
                    "-DincludeScope=runtime",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise BrokerError(
                    f"fetching Kafka {KAFKA_VERSION} from Maven Central failed:\n"
                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
                )
            # kafka_2.13 pulls slf4j-api 1.7, which log4j-slf4j2-impl cannot bind to.
            for old in (Path(tmp) / "libs").glob("slf4j-api-1.*.jar"):
                old.unlink()
            (Path(tmp) / "libs").rename(libs)
            (libs.parent / "pom.xml").write_text(_POM)
        return libs

    # --- lifecycle ----------------------------------------------------------------
    def _recorded_pid(self) -> int | None:
        try:
            pid = int(self._pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_our_broker(pid) else None

    def _is_our_broker(self, pid: int) -> bool:
        """True only for a live java process running kafka.Kafka with our config."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        args = [part.decode(errors="replace") for part in cmdline]
        return "kafka.Kafka" in args and str(self.state_dir / "server.properties") in args

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        properties = self.state_dir / "server.properties"
        secure = dict(self.security.ports) if self.security else {}
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        listeners += [f"{protocol}://127.0.0.1:{port}" for protocol, port in secure.items()]
        protocol_map = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        protocol_map += [f"{protocol}:{protocol}" for protocol in secure]
        # It holds the PLAIN users' passwords: for this user only.
        properties.touch(mode=0o600)
        properties.chmod(0o600)
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners={','.join(listeners)},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners={','.join(listeners)}",
                    "controller.listener.names=CONTROLLER",
                    f"listener.security.protocol.map={','.join(protocol_map)}",
                    "inter.broker.listener.name=PLAINTEXT",
                    *self._security_config(),
                    f"log.dirs={self.state_dir / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    # Topics are created on purpose, with the partitions the tables need.
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        (self.state_dir / "log4j2.yaml").write_text(_LOG4J2)
        return properties

    def _security_config(self) -> list[str]:
        """server.properties lines of the secured listeners (none without `security`)."""
        security = self.security
        if security is None:
            return []
        lines: list[str] = []
        for protocol in security.ports:
            prefix = f"listener.name.{protocol.lower()}."
            if protocol in ("SSL", "SASL_SSL"):
                certfile, keyfile = security.certfile, security.keyfile
                assert certfile is not None
                assert keyfile is not None
                # The PEM keystore inline: no keystore file, no password for the key.
                lines += [
                    f"{prefix}ssl.keystore.type=PEM",
                    f"{prefix}ssl.keystore.certificate.chain="
                    + _property_value(certfile.read_text()),
                    f"{prefix}ssl.keystore.key=" + _property_value(keyfile.read_text()),
                ]
                if protocol == "SSL" and security.client_cafile is not None:
                    lines += [
                        f"{prefix}ssl.truststore.type=PEM",
                        f"{prefix}ssl.truststore.certificates="
                        + _property_value(security.client_cafile.read_text()),
                        f"{prefix}ssl.client.auth=required",
                    ]
            if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
                plain_users = " ".join(
                    f'user_{name}="{password}"' for name, password in security.users.items()
                )
                scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                lines += [
                    f"{prefix}sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
                    f"{prefix}plain.sasl.jaas.config="
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f"{plain_users};",
                    f"{prefix}scram-sha-256.sasl.jaas.config={scram}",
                    f"{prefix}scram-sha-512.sasl.jaas.config={scram}",
                ]
        return lines

    def _scram_arguments(self) -> list[str]:
        """The storage tool's --add-scram arguments: each user for both SCRAM mechanisms."""
        if self.security is None or not set(self.security.ports) & {"SASL_PLAINTEXT", "SASL_SSL"}:
            return []
        return [
            f"--add-scram={mechanism}=[name={name},password={password}]"
            for name, password in self.security.users.items()
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        ]

    def _masked(self, text: str) -> str:
        """`text` with the SASL users' passwords masked (for error messages)."""
        for password in self.security.users.values() if self.security else ():
            text = text.replace(password, "**********")
        return text

    def _format_once(self, libs: Path, properties: Path) -> None:
        marker = self.state_dir / "cluster.id"
        if marker.exists():
            return
        cluster_id = _kafka_cluster_id()
        result = subprocess.run(
            [
                "java",
                "-cp",
                f"{libs}/*",
                f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.yaml'}",
                "kafka.tools.StorageTool",
                "format",
                # One argument: a random id may start with '-', which would read as a flag.
                f"--cluster-id={cluster_id}",
                "-c",
                str(properties),
                "--ignore-formatted",
                # SCRAM credentials live in the cluster metadata: written at format time.
                *self._scram_arguments(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"formatting the broker storage failed:\n{self._masked(result.stderr[-2000:])}"
            )
        marker.write_text(cluster_id + "\n")

    def up(self, timeout_s: float = 90) -> None:
        """Start the broker unless it already runs; return once it answers requests."""
        if self._recorded_pid() is not None and port_open("127.0.0.1", self.port):
            self._wait_ready(timeout_s)
            return
        secure_ports = list(self.security.ports.values()) if self.security else []
        for port in (self.port, self.controller_port, *secure_ports):
            if port_open("127.0.0.1", port):
                raise BrokerError(
                    f"port {port} is taken by another process; stop it or choose "
                    "--port/--controller-port"
                )
        libs = self.ensure_jars()
        properties = self._write_config()
        self._format_once(libs, properties)
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    "java",
                    f"-Xmx{self.heap_mb}m",
                    "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.yaml'}",
                    "-cp",
                    f"{libs}/*",
                    "kafka.Kafka",
                    str(properties),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: Ctrl-C in a terminal reaches the caller, which then
                # stops the broker in order, instead of killing it mid-write.
                start_new_session=True,
            )
        self._pid_path.write_text(f"{process.pid}\n")
        try:
            self._wait_ready(timeout_s, process)
        except BrokerError:
            self.down()
            raise

    def _wait_ready(self, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with {process.returncode}:\n{self._log_tail()}"
                )
            if port_open("127.0.0.1", self.port):
                try:
                    list_topics(self.bootstrap)
                    return
                except Exception as exc:  # not ready: metadata not loaded yet
                    last_error = str(exc)
            time.sleep(0.5)
        raise BrokerError(
            f"the broker did not answer on {self.bootstrap} within {timeout_s:.0f} s "
            f"({last_error}):\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def down(self, timeout_s: float = 30) -> bool:
        """Stop the broker this state directory started; False if none was running."""
        pid = self._recorded_pid()
        self._pid_path.unlink(missing_ok=True)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._is_our_broker(pid):
            _reap(pid)
            time.sleep(0.2)
        if self._is_our_broker(pid):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        return True

    def status(self) -> BrokerStatus:
        pid = self._recorded_pid()
        running = pid is not None and port_open("127.0.0.1", self.port)
        topics: list[str] = []
        if running:
            try:
                topics = list_topics(self.bootstrap)
            except Exception:  # running but not answering yet
                topics = []
        return BrokerStatus(running, pid, self.bootstrap, self.log_path, topics)


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _property_value(text: str) -> str:
    """`text` as one value of a Java properties file (line breaks as \\n escapes)."""
    return text.strip().replace("\\", "\\\\").replace("\r", "").replace("\n", "\\n")


def _kafka_cluster_id() -> str:
    """A random cluster id in Kafka's form: 16 bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
