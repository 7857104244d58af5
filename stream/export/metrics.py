"""Prometheus metrics: counters the agent bumps, and a collector that reads a snapshot.

Counters and the latency histogram are per process (Prometheus sums them across
workers with sum(rate(...))). Gauges computed from table state are produced at scrape
time from a snapshot of the partitions this worker actively owns, so standby copies
never double-count. Every family is listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.kpi.snapshot import QUANTILES, KpiSnapshot
from stream.kpi.windows import format_duration_ms

# Buckets chosen so that every default SLA target (1 h, 4 h, 24 h, 48 h) is a bucket
# bound: "share answered within target" is then an exact bucket ratio, not a guess.
FIRST_RESPONSE_BUCKETS_SECONDS = (
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
    172800.0,
    345600.0,
)


RESOLUTION_BUCKETS_SECONDS = (
    3600.0,
    4 * 3600.0,
    8 * 3600.0,
    86400.0,
    2 * 86400.0,
    4 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
)
COUNT_BUCKETS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0)
HANDLE_BUCKETS_SECONDS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


class LabelCache:
    """The child of a labelled metric for some label values, looked up once.

    `metric.labels(...)` validates, converts and locks on every call, once per event
    and fact here; the child it returns for the same values is always the same object
    (nothing removes children), so it is kept: `cache(metric, *values)` is
    `metric.labels(*values)`, a dict lookup after the first call."""

    __slots__ = ("_children",)

    def __init__(self) -> None:
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def __call__(self, metric: Any, *values: str) -> Any:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class PipelineMetrics:
    """The counters and histograms the agents update, in an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.child = LabelCache()
        # The `_created` series double the exposition and no dashboard reads them.
        # (A process-wide switch in prometheus_client; the worker owns its process.)
        disable_created_metrics()
        self.events = Counter(
            "kpistream_events",
            "Valid events processed (duplicates and rejected messages excluded).",
            ["topic", "type"],
            registry=registry,
        )
        self.rejected = Counter(
            "kpistream_events_rejected",
            "Messages sent to the dead-letter topic, by reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "kpistream_events_duplicate",
            "Valid events dropped because their event_id was already processed.",
            ["topic"],
            registry=registry,
        )
        self.late = Counter(
            "kpistream_events_late",
            "Facts whose event-time window was already final (kept in live metrics only), "
            "by the KPI fact they carried.",
            ["topic", "kpi"],
            registry=registry,
        )
        self.dropped = Counter(
            "kpistream_events_dropped",
            "Valid events not applied, by reason (ticket_history_full: a ticket with more "
            "than 1000 events).",
            ["topic", "reason"],
            registry=registry,
        )
        self.label_overflow = Counter(
            "kpistream_label_overflow",
            "Tickets whose label value was reported as 'other' because the label set is full.",
            ["label"],
            registry=registry,
        )
        self.first_response = Histogram(
            "kpistream_first_response_seconds",
            "H2: time from ticket creation to the first public agent reply.",
            ["queue", "priority"],
            buckets=FIRST_RESPONSE_BUCKETS_SECONDS,
            registry=registry,
        )
        # --- help-desk KPIs counted as events happen (per process; sum across workers) ---
        self.tickets_created = Counter(
            "kpistream_tickets_created",
            "H7/H8: tickets created (complaint: subject_kind is complaint).",
            ["queue", "priority", "complaint"],
            registry=registry,
        )
        self.tickets_escalated = Counter(
            "kpistream_tickets_escalated",
            "H7: escalations (escalation rate = escalated / created).",
            ["queue", "priority", "complaint"],
            registry=registry,
        )
        self.tickets_solved = Counter(
            "kpistream_tickets_solved",
            "H6: solves, by method of resolution (a reopened ticket's next solve counts again).",
            ["queue", "priority", "method"],
            registry=registry,
        )
        self.tickets_reopened = Counter(
            "kpistream_tickets_reopened",
            "H9: reopens of solved tickets (reopen rate = reopened / solved).",
            ["queue", "priority"],
            registry=registry,
        )
        self.resolution = Histogram(
            "kpistream_resolution_seconds",
            "H4: created -> first solve (kind=first, at the first solve) and created -> final "
            "solve (kind=full, at the close).",
            ["queue", "priority", "kind"],
            buckets=RESOLUTION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.agent_work = Histogram(
            "kpistream_agent_work_seconds",
            "H4: created -> first close counting only time in new/open, every reopen "
            "included (pending, on_hold and solved pause it), observed at the close.",
            ["queue", "priority"],
            buckets=RESOLUTION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.requester_wait = Histogram(
            "kpistream_requester_wait_seconds",
            "H4: created -> first solve, counting only time in new/open (pending and on_hold "
            "pause it), observed at the first solve.",
            ["queue", "priority"],
            buckets=RESOLUTION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.touches = Histogram(
            "kpistream_touches_per_solved_ticket",
            "H10: public agent replies before a ticket's first solve (le=1 minus le=0: one-touch).",
            ["queue", "priority"],
            buckets=COUNT_BUCKETS,
            registry=registry,
        )
        self.agent_replies = Counter(
            "kpistream_agent_replies",
            "H10: public agent replies (touches).",
            ["queue", "priority"],
            registry=registry,
        )
        self.handle_time = Histogram(
            "kpistream_agent_handle_seconds",
            "H10: agent handle time per reply, where the reply event carries it.",
            ["queue"],
            buckets=HANDLE_BUCKETS_SECONDS,
            registry=registry,
        )
        self.value_settled = Counter(
            "kpistream_value_settled",
            "H11: refunds and credits granted at resolution, in units of the currency.",
            ["currency"],
            registry=registry,
        )
        self.csat = Counter(
            "kpistream_csat_responses",
            "H13: CSAT answers by score 1..5 (CSAT = score 4 or 5 / all).",
            ["queue", "priority", "score"],
            registry=registry,
        )
        self.nps = Counter(
            "kpistream_nps_responses",
            "H14: NPS answers by category (NPS = 100 * (promoter - detractor) / all).",
            ["queue", "priority", "category"],
            registry=registry,
        )
        self.selfservice_sessions = Counter(
            "kpistream_selfservice_sessions",
            "H15: self-service sessions (success rate = succeeded=true / all).",
            ["succeeded"],
            registry=registry,
        )
        self.selfservice_screens = Histogram(
            "kpistream_selfservice_screens",
            "H15: screens a self-service session took.",
            ["succeeded"],
            buckets=COUNT_BUCKETS,
            registry=registry,
        )
        self.selfservice_clicks = Histogram(
            "kpistream_selfservice_clicks",
            "H15: clicks a self-service session took.",
            ["succeeded"],
            buckets=COUNT_BUCKETS,
            registry=registry,
        )
        self.sla = Counter(
            "kpistream_sla",
            "H3/H5: SLA outcomes, counted once per ticket and SLA: met when the clock stops "
            "within the target, breached the moment it passes the target.",
            ["sla", "queue", "priority", "result"],
            registry=registry,
        )
        self.tickets_pruned = Counter(
            "kpistream_tickets_pruned",
            "Ticket states dropped after their retention (closed, or never created).",
            [],
            registry=registry,
        )
        self.kpi_messages = Counter(
            "kpistream_kpi_messages",
            "Messages written to the KPI topic (each revision of a KPI, dimension set and "
            "window, and tombstones).",
            [],
            registry=registry,
        )
        self.stale_partials = Counter(
            "kpistream_stale_partials",
            "Window partials that arrived after their window was final (re-sent after a "
            "restart); ignored.",
            [],
            registry=registry,
        )
        self.last_event_timestamp = Gauge(
            "kpistream_last_event_timestamp_seconds",
            "Event time (occurred_at) of the newest event processed, as a Unix timestamp.",
            ["topic"],
            registry=registry,
        )
        self.kpi_send_errors = Counter(
            "kpistream_kpi_send_errors",
            "KPI messages the KPI topic refused or did not acknowledge; the merge waits "
            "and sends them again (back-pressure).",
            registry=registry,
        )
        self.dlq_send_errors = Counter(
            "kpistream_dlq_send_errors",
            "Rejected messages that could not be written to the dead-letter topic.",
            [],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """Consumer position of one partition, for lag metrics."""

    topic: str
    partition: int
    lag_records: int | None
    lag_seconds: float | None
    watermark_ms: int | None


class KpiCollector(Collector):
    """Yields the KPI gauges from a snapshot taken at scrape time."""

    def __init__(
        self,
        snapshot: Callable[[], KpiSnapshot | None],
        progress: Callable[[], list[PartitionProgress]],
    ) -> None:
        self._snapshot = snapshot
        self._progress = progress

    def describe(self) -> list[GaugeMetricFamily]:
        # Describing nothing keeps registration from calling collect() (and so the
        # snapshot) at start-up, before any partition is assigned.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot()
        if snap is not None:
            yield from _kpi_families(snap)
        yield from _progress_families(self._progress())


def percentile_label(q: float) -> str:
    """0.5 -> '50', 0.99 -> '99'. Not `quantile`: Prometheus reserves that label for
    summaries, and these are gauges of one closed window."""
    return f"{q * 100:g}"


def _kpi_families(snap: KpiSnapshot) -> Iterator[GaugeMetricFamily]:
    active = GaugeMetricFamily(
        "kpistream_tickets_active",
        "H1: tickets created and not yet solved or closed, now.",
        labels=["queue", "priority", "status"],
    )
    for (queue, priority, status), n in sorted(snap.active.items()):
        active.add_metric([queue, priority, status], n)
    yield active

    by_dims = GaugeMetricFamily(
        "kpistream_first_response_window_seconds",
        "H2: first-response time percentiles over the newest closed event-time window.",
        labels=["window", "percentile", "queue", "priority"],
    )
    overall = GaugeMetricFamily(
        "kpistream_first_response_window_all_seconds",
        "H2: first-response time percentiles over the newest closed window, all tickets.",
        labels=["window", "percentile"],
    )
    counts = GaugeMetricFamily(
        "kpistream_first_response_window_responses",
        "H2: first responses in the newest closed event-time window.",
        labels=["window", "queue", "priority"],
    )
    ends = GaugeMetricFamily(
        "kpistream_first_response_window_end_timestamp_seconds",
        "Exclusive end of the window the first_response_window gauges describe.",
        labels=["window"],
    )
    for size, summary in sorted(snap.first_response_windows.items()):
        window = format_duration_ms(size)
        ends.add_metric([window], summary.end_ms / 1000.0)
        for (queue, priority), sketch in sorted(summary.by_dims.items()):
            counts.add_metric([window, queue, priority], sketch.count)
            for q in QUANTILES:
                value = sketch.quantile(q)
                if value is not None:
                    by_dims.add_metric([window, percentile_label(q), queue, priority], value)
        for q in QUANTILES:
            value = summary.overall.quantile(q)
            if value is not None:
                overall.add_metric([window, percentile_label(q)], value)
    yield from (by_dims, overall, counts, ends)

    breaching = GaugeMetricFamily(
        "kpistream_sla_breaching_tickets",
        "H3/H5: open tickets whose SLA clock has passed its target, now.",
        labels=["sla", "queue", "priority"],
    )
    at_risk = GaugeMetricFamily(
        "kpistream_sla_at_risk_tickets",
        "H3/H5: open tickets whose SLA clock reaches its target within the warning horizon.",
        labels=["sla", "queue", "priority"],
    )
    for (sla, queue, priority, state), n in sorted(snap.sla_clocks.items()):
        family = breaching if state == "breaching" else at_risk
        family.add_metric([sla, queue, priority], n)
    yield from (breaching, at_risk)
    yield GaugeMetricFamily(
        "kpistream_agents_on_shift",
        "H12: agents whose latest agent.shift is 'on' (agent-hours: avg_over_time over 1h).",
        value=snap.agents_on_shift,
    )


def _progress_families(progress: list[PartitionProgress]) -> Iterator[GaugeMetricFamily]:
    lag = GaugeMetricFamily(
        "kpistream_consumer_lag_records",
        "Records in the partition not yet processed by this worker (high water - position).",
        labels=["topic", "partition"],
    )
    lag_seconds = GaugeMetricFamily(
        "kpistream_consumer_lag_seconds",
        "Age of the oldest unprocessed record: 0 when caught up.",
        labels=["topic", "partition"],
    )
    watermark = GaugeMetricFamily(
        "kpistream_watermark_timestamp_seconds",
        "Event-time watermark of the partition: windows ending before it are closed.",
        labels=["topic", "partition"],
    )
    owned = GaugeMetricFamily(
        "kpistream_partitions_owned",
        "Input partitions this worker actively owns (standby copies excluded).",
        labels=["topic"],
    )
    per_topic: dict[str, int] = {}
    for item in progress:
        labels = [item.topic, str(item.partition)]
        per_topic[item.topic] = per_topic.get(item.topic, 0) + 1
        if item.lag_records is not None:
            lag.add_metric(labels, item.lag_records)
        if item.lag_seconds is not None:
            lag_seconds.add_metric(labels, item.lag_seconds)
        if item.watermark_ms is not None:
            watermark.add_metric(labels, item.watermark_ms / 1000.0)
    for topic, n in sorted(per_topic.items()):
        owned.add_metric([topic], n)
    yield from (lag, lag_seconds, watermark, owned)


class WindowStoreCollector(Collector):
    """The window store behind GET /kpis/windows: its size and how far behind the KPI
    topic it is, read at scrape time."""

    def __init__(self, stored: Callable[[], int], lag: Callable[[], int | None]) -> None:
        self._stored = stored
        self._lag = lag

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "kpistream_api_windows_stored",
            "Closed-window messages of the KPI topic held in memory for GET /kpis/windows.",
            value=self._stored(),
        )
        lag = self._lag()
        if lag is not None:
            yield GaugeMetricFamily(
                "kpistream_api_kpi_topic_lag_records",
                "Records of the KPI topic not yet read into the window store (all partitions).",
                value=lag,
            )
