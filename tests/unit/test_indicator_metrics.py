"""The external-indicator gauges (stream/export/indicator_metrics.py): one series per name
for its newest period, HELP texts, bounded names, and every family in docs/metrics.md."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.export.indicator_metrics import MAX_INDICATOR_NAMES, IndicatorCollector
from stream.export.metrics import PipelineMetrics
from stream.kpi.indicators import IndicatorBook
from tests.unit.test_indicators import DAY, DEC, JAN, NOV, OCT, REPORTED, report

FAMILIES = (
    "kpistream_external_indicator",
    "kpistream_external_indicator_period_start_timestamp_seconds",
    "kpistream_external_indicator_period_end_timestamp_seconds",
)
DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family -> {sorted labels: value}, asserting every family has HELP."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        assert family.documentation, family.name
        out[family.name] = {
            tuple(sorted(s.labels.items())): s.value
            for s in family.samples
            if s.name == family.name
        }
    return out


def setup(
    book: IndicatorBook | None, max_names: int = MAX_INDICATOR_NAMES
) -> tuple[CollectorRegistry, PipelineMetrics]:
    registry = CollectorRegistry()
    pipeline = PipelineMetrics(registry)
    registry.register(IndicatorCollector(lambda: book, pipeline.label_overflow, max_names))
    return registry, pipeline


def overflow(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("kpistream_label_overflow_total", {"label": "indicator"})


def test_each_name_shows_its_newest_period_value_and_bounds() -> None:
    book = IndicatorBook()
    book.apply(report(0.042, start=NOV, end=DEC))
    book.apply(report(0.050, start=DEC, end=JAN))  # the newest period of the name
    book.apply(report(0.120, start=OCT, end=JAN))  # Q4 ends with December: December wins
    book.apply(report(-1200, name="cash_flow", unit="EUR", start=OCT, end=JAN))
    registry, _ = setup(book)
    families = scrape(registry)
    turnover = (("name", "employee_turnover"), ("unit", "ratio"))
    cash = (("name", "cash_flow"), ("unit", "EUR"))
    assert families[FAMILIES[0]] == {turnover: 0.05, cash: -1200.0}
    assert families[FAMILIES[1]] == {turnover: DEC / 1000, cash: OCT / 1000}
    assert families[FAMILIES[2]] == {turnover: JAN / 1000, cash: JAN / 1000}
    assert overflow(registry) == 0  # the series exists from the start


def test_a_correction_shows_at_the_next_scrape() -> None:
    book = IndicatorBook()
    book.apply(report(0.042, at_ms=REPORTED))
    registry, _ = setup(book)
    labels = {"name": "employee_turnover", "unit": "ratio"}
    assert registry.get_sample_value(FAMILIES[0], labels) == 0.042
    book.apply(report(0.045, at_ms=REPORTED + DAY))
    assert registry.get_sample_value(FAMILIES[0], labels) == 0.045


def test_help_texts_and_types() -> None:
    book = IndicatorBook()
    book.apply(report(1.0))
    registry, _ = setup(book)
    text = generate_latest(registry).decode()
    for name in FAMILIES:
        assert re.search(rf"^# HELP {name} \S.+$", text, re.MULTILINE), name
        assert f"# TYPE {name} gauge" in text


def test_no_book_means_no_series() -> None:
    registry, _ = setup(None)
    families = scrape(registry)
    assert all(families.get(name, {}) == {} for name in FAMILIES)


def test_names_past_the_bound_share_one_other_series_counted_once_each() -> None:
    book = IndicatorBook()
    # Labels go to the names in the order of their oldest report held.
    for n, name in enumerate(["a", "b", "c", "d", "e"]):
        book.apply(report(float(n), name=name, unit=f"u{n}", at_ms=REPORTED + n * DAY))
    registry, _ = setup(book, max_names=3)
    families = scrape(registry)
    assert families[FAMILIES[0]] == {
        (("name", "a"), ("unit", "u0")): 0.0,
        (("name", "b"), ("unit", "u1")): 1.0,
        (("name", "c"), ("unit", "u2")): 2.0,
        # d and e: the latest reported of them, under one bounded series.
        (("name", "other"), ("unit", "other")): 4.0,
    }
    assert set(families[FAMILIES[1]]) == set(families[FAMILIES[0]])
    assert overflow(registry) == 2
    scrape(registry)
    assert overflow(registry) == 2  # per name, not per scrape
    # A name once labelled keeps its label, a new name goes to other.
    book.apply(report(9.0, name="f", unit="u9", at_ms=REPORTED - DAY))
    families = scrape(registry)
    assert (("name", "a"), ("unit", "u0")) in families[FAMILIES[0]]
    assert overflow(registry) == 3
    assert len(families[FAMILIES[0]]) == 4


def test_a_name_that_is_literally_other_never_duplicates_the_overflow_series() -> None:
    book = IndicatorBook()
    book.apply(report(1.0, name="a", unit="other", at_ms=REPORTED))
    book.apply(report(2.0, name="other", unit="other", at_ms=REPORTED + DAY))
    book.apply(report(3.0, name="z", unit="x", at_ms=REPORTED + 2 * DAY))
    registry, _ = setup(book, max_names=2)
    families = scrape(registry)  # the parser would fail on a duplicate series
    assert families[FAMILIES[0]] == {
        (("name", "a"), ("unit", "other")): 1.0,
        (("name", "other"), ("unit", "other")): 3.0,
    }
    assert overflow(registry) == 1  # z; "other" itself is no overflow


def test_fifty_names_by_default() -> None:
    book = IndicatorBook()
    for n in range(60):
        book.apply(report(float(n), name=f"n{n:02d}", at_ms=REPORTED + n))
    counter_registry = CollectorRegistry()
    counter = Counter("kpistream_label_overflow", "overflow", ["label"], registry=counter_registry)
    registry = CollectorRegistry()
    registry.register(IndicatorCollector(lambda: book, counter))
    families = scrape(registry)
    names = {dict(labels)["name"] for labels in families[FAMILIES[0]]}
    assert len(names) == 51
    assert {f"n{n:02d}" for n in range(50)} | {"other"} == names
    assert (
        counter_registry.get_sample_value("kpistream_label_overflow_total", {"label": "indicator"})
        == 10
    )


def test_every_family_is_documented() -> None:
    documented = set(re.findall(r"`(kpistream_[a-z_]+)`", DOC))
    for name in FAMILIES:
        assert name in documented, f"{name} is not in docs/metrics.md"
