"""The worker's indicator path: one indicators.external message in; the table write, the
kpi.windows.v1 messages and the dead-letter reason out.

Nothing is windowed or merged: a report is the value of its period, final when it is
made, so the flow gives its KPI message directly (no partials, no merge). The topic has
one partition, so one worker holds every name; `book` is its in-memory copy of the
`indicators` table (rebuilt by `load` after a rebalance) and what the gauges read.

The table write is returned, not made: the agent writes it only once Kafka has the KPI
messages it accounts for (as the merge does with StagedState). Written first, a crash
before the send would make the re-delivered report a duplicate, and its message lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stream.codec import INDICATOR_TYPES, Decoder, Rejection
from stream.export.metrics import PipelineMetrics
from stream.kpi.events import Event
from stream.kpi.indicators import (
    DUPLICATE,
    TOO_OLD,
    Change,
    IndicatorBook,
    KpiMessage,
    Refusal,
    change_messages,
)
from stream.kpi.timefmt import format_rfc3339_ms
from stream.settings import Settings


@dataclass
class IndicatorResult:
    event: Event | None = None
    # (reason, detail) of a message for the dead-letter topic: a decoder rejection, or a
    # report the core refuses (bad_period).
    dlq: tuple[str, str] | None = None
    duplicate: bool = False
    change: Change | None = None
    kpi_messages: list[KpiMessage] = field(default_factory=list)  # (key, body or None)
    # indicators table: name -> entry; write after the KPI messages are delivered
    state_writes: dict[str, dict[str, Any]] = field(default_factory=dict)


class IndicatorFlow:
    def __init__(self, settings: Settings, pipeline: PipelineMetrics) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.decoder = Decoder(
            INDICATOR_TYPES,
            max_message_bytes=settings.max_message_bytes,
            max_future_ms=settings.max_future_ms,
        )
        self.book = IndicatorBook()
        self.owned = False  # the indicators partition is assigned here (gauges shown)

    def process(self, raw: bytes | None, now_ms: int) -> IndicatorResult:
        """Decode, dedupe and apply one report to the book; returns what to send and write."""
        topic = self.settings.indicators_topic
        self.owned = True  # a message of the partition is processed here: it is ours
        decoded = self.decoder.decode(raw, now_ms)
        if isinstance(decoded, Rejection):
            self.pipeline.rejected.labels(topic, decoded.reason.value).inc()
            return IndicatorResult(dlq=(decoded.reason.value, decoded.detail))
        event = decoded
        outcome = self.book.apply(event)
        if isinstance(outcome, Refusal):
            if outcome.rejected:
                self.pipeline.rejected.labels(topic, outcome.reason).inc()
                return IndicatorResult(event=event, dlq=(outcome.reason, outcome.detail))
            if outcome.reason == DUPLICATE:
                self.pipeline.duplicates.labels(topic).inc()
                return IndicatorResult(event=event, duplicate=True)
        self.pipeline.events.labels(topic, event.type).inc()
        self.pipeline.last_event_timestamp.labels(topic).set(event.occurred_at_ms / 1000.0)
        if isinstance(outcome, Refusal):
            if outcome.reason == TOO_OLD:
                self.pipeline.dropped.labels(topic, "indicator_period_too_old").inc()
            # SUPERSEDED: the period already holds a newer report; nothing to send. The
            # event id is remembered, so the entry is written (a repeat is a duplicate).
            name = str(event.body["name"])
            return IndicatorResult(event=event, state_writes={name: self.book.entry(name)})
        messages = change_messages(outcome, format_rfc3339_ms(now_ms))
        self.pipeline.kpi_messages.inc(len(messages))
        return IndicatorResult(
            event=event,
            change=outcome,
            kpi_messages=messages,
            state_writes={outcome.name: self.book.entry(outcome.name)},
        )

    def load(self, owned: bool, entries: Iterable[tuple[str, Any]]) -> None:
        """After a rebalance (and after a failed send, whose change the table lacks): the
        book from the table when the partition is ours."""
        self.owned = owned
        self.book = IndicatorBook.from_dict(dict(entries)) if owned else IndicatorBook()

    def snapshot(self) -> IndicatorBook | None:
        """What the gauges read: nothing on a worker that does not own the partition."""
        return self.book if self.owned else None
