"""External indicators: the latest report of each named indicator and period.

Guide indicators that no event stream carries (employee turnover, brand attributes,
competitor comparison, cash flow, customer count) arrive as `indicator.reported` events
on indicators.external, keyed by name. Nothing is computed from them: the product keeps
the latest value of each (name, period) and exposes it beside the computed KPIs.

Pure. One `IndicatorSeries` per name is one entry of a changelogged table keyed by name
(its `to_dict` is the stored value); `IndicatorBook` holds the series of every name for
the metrics and for later KPIs that read an indicator (H8 reads `customer_count`).

Which report of a period wins does not depend on arrival order: the one with the newest
`occurred_at`, ties broken by the larger `event_id`. That order is total, so applying
the same events in any order, or any event twice, leaves the same values; only the
revision numbers (how many times a period's value was replaced here) can differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stream.kpi.catalogue import KpiValue, message
from stream.kpi.events import Event
from stream.kpi.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms

KPI = "external_indicator"
CUSTOMER_COUNT = "customer_count"  # the indicator H8 divides by

# Periods kept per name: two years of monthly reports. A report of a period older than
# all kept ones, when the series is full, is ignored (TOO_OLD): it would be evicted at once.
MAX_PERIODS = 24
# Event ids remembered per name, only to tell a duplicate from a superseded report: the
# result is the same without them (see the module docstring).
MAX_IDS = 256

# What the KPI message can carry: window_start/window_end have four-digit years in UTC.
MIN_PERIOD_MS = parse_rfc3339_ms("1000-01-01T00:00:00Z")
MAX_PERIOD_MS = parse_rfc3339_ms("9999-12-31T23:59:59.999Z")

# Why a report changed nothing. Each is a bounded metric label.
DUPLICATE = "duplicate"  # its event_id was applied before
SUPERSEDED = "superseded"  # the period holds a newer report (occurred_at, then event_id)
TOO_OLD = "period_too_old"  # older than the MAX_PERIODS newest periods kept
# ... and why a report is invalid: the caller sends the raw message to the dead-letter topic.
BAD_PERIOD = "bad_period"
REJECTIONS = frozenset({BAD_PERIOD})

KpiMessage = tuple[str, dict[str, Any] | None]  # (key, body); None is a tombstone


@dataclass(frozen=True, slots=True)
class Refusal:
    """A report that changed nothing: `reason` is one of the constants above."""

    reason: str
    detail: str

    @property
    def rejected(self) -> bool:
        """Invalid (to the dead-letter topic), not merely a repeat or an old report."""
        return self.reason in REJECTIONS

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    """The value held for one period; `revision` counts the reports that replaced it."""

    period_start_ms: int
    period_end_ms: int
    value: float
    unit: str
    source: str
    occurred_at_ms: int
    event_id: str
    revision: int = 0

    @property
    def period(self) -> tuple[int, int]:
        return (self.period_start_ms, self.period_end_ms)

    @property
    def version(self) -> tuple[int, str]:
        """The order of reports of one period: the larger wins."""
        return (self.occurred_at_ms, self.event_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "period_start_ms": self.period_start_ms,
            "period_end_ms": self.period_end_ms,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
            "occurred_at_ms": self.occurred_at_ms,
            "event_id": self.event_id,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            period_start_ms=int(data["period_start_ms"]),
            period_end_ms=int(data["period_end_ms"]),
            value=data["value"],
            unit=str(data["unit"]),
            source=str(data["source"]),
            occurred_at_ms=int(data["occurred_at_ms"]),
            event_id=str(data["event_id"]),
            revision=int(data.get("revision", 0)),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """A report that is now the value of its period; `previous` is the one it replaced
    (None: the period is new), `evicted` a period dropped to keep MAX_PERIODS."""

    name: str
    report: Report
    previous: Report | None = None
    evicted: Report | None = None

    @property
    def is_revision(self) -> bool:
        return self.previous is not None


def period_of(event: Event) -> tuple[int, int] | Refusal:
    """The event's [period_start, period_end) in epoch ms, or why it is no period.

    The schema checks the format of both times; this checks that they are real times,
    that the end is after the start, and that both fit a KPI message's four-digit year.
    """
    try:
        start = parse_rfc3339_ms(str(event.body["period_start"]))
        end = parse_rfc3339_ms(str(event.body["period_end"]))
    except TimestampError as exc:
        return Refusal(BAD_PERIOD, str(exc))
    if end <= start:
        return Refusal(
            BAD_PERIOD,
            f"period_end {event.body['period_end']} is not after "
            f"period_start {event.body['period_start']}",
        )
    if start < MIN_PERIOD_MS or end > MAX_PERIOD_MS:
        return Refusal(BAD_PERIOD, "period must lie within the years 1000..9999 (UTC)")
    return (start, end)


def _age(report: Report) -> tuple[int, int]:
    """The order of periods: the latest end is the newest; of two that end together the
    later start (the month before the quarter that ends with it)."""
    return (report.period_end_ms, report.period_start_ms)


def _newest_first(reports: Iterable[Report]) -> list[Report]:
    return sorted(reports, key=_age, reverse=True)


@dataclass(slots=True)
class IndicatorSeries:
    """One indicator: its latest report per period, the newest MAX_PERIODS periods."""

    name: str
    periods: list[Report] = field(default_factory=list)  # newest period first
    ids: list[str] = field(default_factory=list)  # recent event ids, oldest first

    def apply(self, event: Event) -> Change | Refusal:
        """Record the report; returns what changed, or why nothing did."""
        if event.event_id in self.ids:
            return Refusal(DUPLICATE, f"event_id {event.event_id!r} was applied before")
        period = period_of(event)
        if isinstance(period, Refusal):
            return period
        self._remember(event.event_id)
        held = next((r for r in self.periods if r.period == period), None)
        report = Report(
            period_start_ms=period[0],
            period_end_ms=period[1],
            value=event.body["value"],
            unit=str(event.body["unit"]),
            source=str(event.body["source"]),
            occurred_at_ms=event.occurred_at_ms,
            event_id=event.event_id,
        )
        if held is not None:
            if report.version <= held.version:
                return Refusal(
                    SUPERSEDED,
                    f"period holds a newer report ({held.event_id!r}, "
                    f"occurred_at {format_rfc3339_ms(held.occurred_at_ms)})",
                )
            report = replace(report, revision=held.revision + 1)
            self.periods[self.periods.index(held)] = report
            return Change(self.name, report, previous=held)
        if len(self.periods) >= MAX_PERIODS and _age(report) < _age(self.periods[-1]):
            return Refusal(TOO_OLD, f"older than the {MAX_PERIODS} newest periods kept")
        self.periods = _newest_first([*self.periods, report])
        evicted = self.periods.pop() if len(self.periods) > MAX_PERIODS else None
        return Change(self.name, report, evicted=evicted)

    def _remember(self, event_id: str) -> None:
        self.ids.append(event_id)
        if len(self.ids) > MAX_IDS:
            del self.ids[: len(self.ids) - MAX_IDS]

    def newest(self) -> Report | None:
        """The report of the newest period (what the gauges show)."""
        return self.periods[0] if self.periods else None

    def containing(self, at_ms: int) -> Report | None:
        """Of the periods that contain `at_ms`, the latest report (occurred_at, event_id)."""
        inside = [r for r in self.periods if r.period_start_ms <= at_ms < r.period_end_ms]
        return max(inside, key=lambda r: r.version, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "periods": [r.to_dict() for r in self.periods],
            "ids": list(self.ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndicatorSeries:
        return cls(
            name=str(data["name"]),
            periods=_newest_first(Report.from_dict(r) for r in data.get("periods", [])),
            ids=[str(i) for i in data.get("ids", [])],
        )


class IndicatorBook:
    """The series of every indicator name, as the worker holds them in memory."""

    __slots__ = ("_series",)

    def __init__(self, series: Iterable[IndicatorSeries] = ()) -> None:
        self._series: dict[str, IndicatorSeries] = {s.name: s for s in series}

    def apply(self, event: Event) -> Change | Refusal:
        """Record the report in its name's series (see IndicatorSeries.apply)."""
        name = str(event.body["name"])
        series = self._series.get(name)
        if series is None:
            series = IndicatorSeries(name)
            outcome = series.apply(event)
            if isinstance(outcome, Change):
                self._series[name] = series
            return outcome
        return series.apply(event)

    def get(self, name: str) -> IndicatorSeries | None:
        return self._series.get(name)

    def entry(self, name: str) -> dict[str, Any]:
        """The table value of `name`: write it after any outcome but a duplicate or a
        rejection (a superseded report's id is remembered too). KeyError if unknown."""
        return self._series[name].to_dict()

    def __iter__(self) -> Iterator[IndicatorSeries]:
        return iter(self._series.values())

    def __len__(self) -> int:
        return len(self._series)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: s.to_dict() for name, s in self._series.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any] | None]) -> IndicatorBook:
        """From {name: table value}, e.g. dict(table.items()); None values are skipped."""
        return cls(IndicatorSeries.from_dict(v) for v in data.values() if v is not None)


def customer_count(book: IndicatorBook, at_ms: int) -> float | None:
    """The customer count at `at_ms`: the latest report of `customer_count` whose period
    contains it; None when no reported period does."""
    series = book.get(CUSTOMER_COUNT)
    report = series.containing(at_ms) if series is not None else None
    return report.value if report is not None else None


def indicator_message(
    name: str,
    unit: str,
    period_start_ms: int,
    period_end_ms: int,
    value: float,
    revision: int,
    emitted_at_text: str,
) -> tuple[str, dict[str, Any]]:
    """The kpi.windows.v1 message of one reported value (schemas/kpi/kpi-window.v1).

    The window is the period: its length as the window size (30 days -> "30d", an odd
    length in milliseconds), its start and end as window_start and window_end. A report
    is final when it is made (is_final); a correction is the next revision.
    """
    value_of = KpiValue(KPI, {"name": name, "unit": unit}, {"value": value}, {})
    size_ms = period_end_ms - period_start_ms
    return message(
        value_of, size_ms, period_start_ms, revision, True, emitted_at_text, format_rfc3339_ms
    )


def change_messages(change: Change, emitted_at_text: str) -> list[KpiMessage]:
    """What to send to the KPI topic for a change: a tombstone for the replaced report's
    key when the correction changed the unit (the unit is in the key), then the message."""
    r = change.report
    key, body = indicator_message(
        change.name,
        r.unit,
        r.period_start_ms,
        r.period_end_ms,
        r.value,
        r.revision,
        emitted_at_text,
    )
    out: list[KpiMessage] = []
    old = change.previous
    if old is not None and old.unit != r.unit:
        old_key, _ = indicator_message(
            change.name, old.unit, old.period_start_ms, old.period_end_ms, old.value, 0, ""
        )
        out.append((old_key, None))
    out.append((key, body))
    return out
