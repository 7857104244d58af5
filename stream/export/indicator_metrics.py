"""Prometheus gauges of the external indicators, read from the indicator book at scrape time.

One series per indicator name: the value of its newest period and that period's bounds,
so a dashboard shows the reported indicators beside the computed KPIs (and can tell a
stale report from a current one). Every value of every period is on kpi.windows.v1.

`name` and `unit` come from producers, so the names are bounded: the first
MAX_INDICATOR_NAMES names keep their label, the rest share one series name="other",
unit="other" (holding the latest reported of them: a sign that the bound is reached,
not a value to read), each counted once in kpistream_label_overflow_total{label="indicator"}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.kpi.indicators import IndicatorBook, Report
from stream.kpi.labels import OTHER, BoundedLabels

MAX_INDICATOR_NAMES = 50
OVERFLOW_LABEL = "indicator"  # the `label` value of kpistream_label_overflow_total


class IndicatorCollector(Collector):
    """Yields the external-indicator gauges from the book at scrape time.

    Names get their label in the order of their oldest report still held (then by
    name), so after a restart the long-reported names keep theirs; a name's label, once
    given in this process, never changes.
    """

    def __init__(
        self,
        book: Callable[[], IndicatorBook | None],
        overflow: Counter,
        max_names: int = MAX_INDICATOR_NAMES,
    ) -> None:
        self._book = book
        self._overflow = overflow.labels(OVERFLOW_LABEL)
        self._labels = BoundedLabels(limit=max_names)
        self._overflowed: set[str] = set()  # names counted in the overflow counter

    def describe(self) -> list[GaugeMetricFamily]:
        # As KpiCollector: describing nothing keeps registration from collecting.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value = GaugeMetricFamily(
            "kpistream_external_indicator",
            "External indicator (indicators.external): the value reported for the newest "
            "period of each name, in the unit the producer named.",
            labels=["name", "unit"],
        )
        start = GaugeMetricFamily(
            "kpistream_external_indicator_period_start_timestamp_seconds",
            "Start (inclusive) of the period the kpistream_external_indicator value covers.",
            labels=["name", "unit"],
        )
        end = GaugeMetricFamily(
            "kpistream_external_indicator_period_end_timestamp_seconds",
            "End (exclusive) of the period the kpistream_external_indicator value covers.",
            labels=["name", "unit"],
        )
        for labels, report in self._series():
            value.add_metric(labels, report.value)
            start.add_metric(labels, report.period_start_ms / 1000.0)
            end.add_metric(labels, report.period_end_ms / 1000.0)
        yield from (value, start, end)

    def _series(self) -> list[tuple[list[str], Report]]:
        """(labels, report) per series: one per bounded name, one for all of 'other'."""
        book = self._book()
        if book is None:
            return []
        held = sorted(
            (min(r.occurred_at_ms for r in s.periods), s.name, report)
            for s in book
            if (report := s.newest()) is not None
        )
        out: list[tuple[list[str], Report]] = []
        other: Report | None = None
        for _, name, report in held:
            label = self._labels.label(name)
            if label != OTHER:
                out.append(([label, report.unit], report))
                continue
            # Past the bound (or a name that is literally "other": one series for both).
            if name not in self._labels.known and name not in self._overflowed:
                self._overflowed.add(name)
                self._overflow.inc()
            if other is None or report.version > other.version:
                other = report
        if other is not None:
            out.append(([OTHER, OTHER], other))
        return out
