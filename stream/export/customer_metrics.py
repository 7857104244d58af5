"""The live customer-join metrics (O7, O8), counted once per fact, and the H8 gauges of
the newest final windows (exported by the worker that runs the merge)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream.kpi.contrib import Contribution


class CustomerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.conversions = Counter(
            "kpistream_customer_conversions",
            "O7: conversion periods decided (7 days after a support contact), by whether "
            "the customer placed an order within them.",
            ["converted"],
            registry=registry,
        )
        self.retention_base = Counter(
            "kpistream_customer_retention_base",
            "O8: customers with an order in a retention window, counted in the next window's base.",
            [],
            registry=registry,
        )
        self.retained = Counter(
            "kpistream_customers_retained",
            "O8: customers of a window's base who ordered again in it.",
            [],
            registry=registry,
        )

    def count(self, facts: list[Contribution]) -> None:
        names_by_ident: dict[str, set[str]] = {}
        for c in facts:
            names_by_ident.setdefault(c.ident, set()).add(c.name)
        for c in facts:
            if c.name == "conversion:contacted":
                converted = "conversion:converted" in names_by_ident[c.ident]
                self.conversions.labels(str(converted).lower()).inc()
            elif c.name == "retention:base":
                self.retention_base.inc()
            elif c.name == "retention:retained":
                self.retained.inc()


class ComplaintGrowthCollector(Collector):
    """H8 of the newest final window of each size, from the merge (one worker)."""

    def __init__(self, latest: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "kpistream_active_customers",
            "H8: customers with an order within the active-customer window, at the end "
            "of the newest final window of each size (exported by the worker running the "
            "merge).",
            labels=["window"],
        )
        rate = GaugeMetricFamily(
            "kpistream_complaints_per_thousand_customers",
            "H8: complaints created per 1,000 active customers in the newest final window.",
            labels=["window"],
        )
        flag = GaugeMetricFamily(
            "kpistream_complaints_outgrow_customers",
            "H8: 1 when complaints grew faster than active customers against the previous "
            "window, 0 when not (newest final window with both defined).",
            labels=["window"],
        )
        for window, values in sorted(self.latest().items()):
            active.add_metric([window], values["active_customers"])
            if values.get("complaints_per_1000") is not None:
                rate.add_metric([window], values["complaints_per_1000"])
            if values.get("complaints_outgrow_customers") is not None:
                flag.add_metric([window], values["complaints_outgrow_customers"])
        yield from (active, rate, flag)
