"""Send simulated messages to Kafka, or write them to a JSON Lines file.

Kafka: `feed_to_kafka` produces each `SimMessage` with its exact key and value bytes to
the real topic that `topics` maps its logical topic ("helpdesk", "orders") to. With
`pace=True` a message goes out when the wall clock reaches its `emit_at_ms` (the caller
sets the simulation's `start_ms` to now for a live feed; messages already due go out at
once); with `pace=False` they go out as fast as the producer batches them. The producer
is flushed and closed at the end, after `max_messages`, and when `stop` is set.

JSONL (`feed_to_file`), one object per message and line::

    {"topic": "helpdesk", "key": "T-42-0000001", "value": "{\\"event_id\\": ...}",
     "emit_at_ms": 1795515330000, "kind": "event"}

* `topic`: the logical topic, "helpdesk" or "orders" (not the Kafka topic name).
* `key`: the key as a string (UTF-8; undecodable bytes replaced), or null.
* `value`: the exact message bytes as a string when they are valid UTF-8, otherwise
  `{"base64": "<standard base64 of the bytes>"}` (the invalid-UTF-8 malformed kind).
  A consumer replays a line by encoding the string as UTF-8 or decoding the base64.
* `emit_at_ms`: when the message is due (epoch ms, non-decreasing through the file).
* `kind`: "event", "duplicate" or "malformed".
"""

from __future__ import annotations

import base64
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.local.simulator import SimMessage

__all__ = ["FeedStats", "feed_to_file", "feed_to_kafka", "jsonl_line"]


@dataclass
class FeedStats:
    """What a feed sent: counts by kind and logical topic, and the wall seconds it took."""

    sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_topic: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    failed: int = 0  # Kafka sends whose delivery failed (reported by the producer)

    def count(self, msg: SimMessage) -> None:
        self.sent += 1
        self.by_kind[msg.kind] = self.by_kind.get(msg.kind, 0) + 1
        self.by_topic[msg.topic] = self.by_topic.get(msg.topic, 0) + 1


def _producer(bootstrap: str, pace: bool, **client_options: Any) -> Any:
    """`client_options`: the security arguments (stream.kafka_security.kafka_python_options)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

        return KafkaProducer(
            bootstrap_servers=bootstrap,
            acks=1,
            linger_ms=5 if pace else 50,
            batch_size=16_384 if pace else 512 * 1024,
            max_in_flight_requests_per_connection=5,
            retries=5,
            client_id="kpi-simulate",
            **client_options,
        )


class _Status:
    """A rich status line: messages sent, rate, kinds, event time reached."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.progress: Any = None
        self.task: Any = None
        self.next_update = 0.0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns: list[Any] = [TextColumn("[bold]simulate[/bold]")]
        if total is not None:
            columns.append(BarColumn())
        columns += [TextColumn("{task.description}"), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=Console(stderr=True), transient=False)
        self.task = self.progress.add_task("starting", total=total)
        self.progress.start()

    def update(
        self, stats: FeedStats, started: float, msg: SimMessage, force: bool = False
    ) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now < self.next_update:
            return
        self.next_update = now + 0.25
        elapsed = max(now - started, 1e-9)
        kinds = " ".join(f"{k}={v}" for k, v in sorted(stats.by_kind.items()))
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(msg.emit_at_ms / 1000))
        text = f"{stats.sent} sent, {stats.sent / elapsed:,.0f}/s, {kinds}, at {at}Z"
        if stats.failed:
            text += f", [red]{stats.failed} failed[/red]"
        self.progress.update(self.task, completed=stats.sent, description=text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def feed_to_kafka(
    messages: Iterable[SimMessage],
    bootstrap: str,
    topics: Mapping[str, str],
    *,
    pace: bool,
    stop: threading.Event | None = None,
    max_messages: int | None = None,
    progress: bool = False,
    client_options: Mapping[str, Any] | None = None,
) -> FeedStats:
    """Produce `messages` to Kafka; return what was sent. See the module docstring.

    `client_options` are the producer's security arguments
    (stream.kafka_security.kafka_python_options); none: PLAINTEXT.
    """
    names = dict(topics)
    stats = FeedStats()
    lock = threading.Lock()

    def failed(_exc: BaseException) -> None:
        with lock:
            stats.failed += 1

    started = time.monotonic()
    producer = _producer(bootstrap, pace, **(client_options or {}))
    status = _Status(progress, max_messages)
    last: SimMessage | None = None
    try:
        for msg in messages:
            if max_messages is not None and stats.sent >= max_messages:
                break
            if stop is not None and stop.is_set():
                break
            if pace:
                wait_s = msg.emit_at_ms / 1000.0 - time.time()
                if wait_s > 0:
                    if stop is not None:
                        if stop.wait(wait_s):
                            break
                    else:
                        time.sleep(wait_s)
            future = producer.send(names[msg.topic], key=msg.key, value=msg.value)
            future.add_errback(failed)
            stats.count(msg)
            last = msg
            status.update(stats, started, msg)
    finally:
        try:
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=10)
            stats.seconds = time.monotonic() - started
            if last is not None:
                status.update(stats, started, last, force=True)
            status.close()
    return stats


def jsonl_line(msg: SimMessage) -> bytes:
    """One JSONL line (with the newline) for `msg`, in the format of the module docstring."""
    value: Any
    try:
        value = msg.value.decode("utf-8")
    except UnicodeDecodeError:
        value = {"base64": base64.b64encode(msg.value).decode("ascii")}
    key = None if msg.key is None else msg.key.decode("utf-8", "replace")
    record = {
        "topic": msg.topic,
        "key": key,
        "value": value,
        "emit_at_ms": msg.emit_at_ms,
        "kind": msg.kind,
    }
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def feed_to_file(
    messages: Iterable[SimMessage], path: Path, *, max_messages: int | None = None
) -> FeedStats:
    """Write `messages` as JSON Lines to `path` (overwritten); return what was written."""
    stats = FeedStats()
    started = time.monotonic()
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=1 << 20) as out:
        for msg in messages:
            if max_messages is not None and stats.sent >= max_messages:
                break
            out.write(jsonl_line(msg))
            stats.count(msg)
    stats.seconds = time.monotonic() - started
    return stats
