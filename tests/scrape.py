"""Reading an exposition the way Prometheus does, for assertions on what users see."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(text: str) -> Samples:
    """Sample name (with _total, _bucket, ... suffixes) -> [(labels, value)]."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def scrape(registry: CollectorRegistry) -> Samples:
    return samples(generate_latest(registry).decode())


def total(metrics: Samples, name: str) -> float:
    return sum(value for _, value in metrics.get(name, []))


def by(metrics: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """Integer values summed by the given labels; zero series left out."""
    result: Counter[tuple[str, ...]] = Counter()
    for lab, value in metrics.get(name, []):
        if value:
            result[tuple(lab[k] for k in labels)] += int(value)
    return result


def first_response_sums(metrics: Samples) -> dict[tuple[str, str], float]:
    return {
        (lab["queue"], lab["priority"]): value
        for lab, value in metrics.get("kpistream_first_response_seconds_sum", [])
    }
