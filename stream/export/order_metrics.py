"""The live order metrics (O1-O6): counters and a histogram, counted once per order fact.

Labels are bounded by the event schema: `channel` is one of web, app, phone, store (or
`unknown` for an order whose placement has not arrived), outcomes are fixed sets.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Histogram

from stream.export.metrics import LabelCache
from stream.kpi.contrib import Contribution

CONFIRMATION_BUCKETS_SECONDS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0)


class OrderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.child = LabelCache()

        def counter(name: str, help_text: str, labels: list[str]) -> Counter:
            return Counter(name, help_text, labels, registry=registry)

        self.placed = counter("kpistream_orders_placed", "Orders placed.", ["channel"])
        self.cancelled = counter("kpistream_orders_cancelled", "Orders cancelled.", ["channel"])
        self.confirmation = Histogram(
            "kpistream_order_confirmation_seconds",
            "O1: order placed -> first confirmation.",
            ["channel"],
            buckets=CONFIRMATION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.confirmation_sla = counter(
            "kpistream_order_confirmation_sla",
            "O2: orders confirmed within 60 s (met) or not (missed, counted when the 60 s "
            "pass unconfirmed); an order cancelled within the 60 s counts neither.",
            ["channel", "result"],
        )
        self.one_click = counter(
            "kpistream_order_one_click_confirmations",
            "O3: confirmed online orders (web, app), by whether one click or fewer did it.",
            ["channel", "one_click"],
        )
        self.shipment_notice = counter(
            "kpistream_order_shipment_notices",
            "O4: shipped orders whose customer was notified within 15 minutes of the "
            "shipment (met) or not (missed, counted when the 15 minutes pass).",
            ["channel", "result"],
        )
        self.delay_notice = counter(
            "kpistream_order_delay_notices",
            "O5: delayed orders, by what came first after the delay: the delay notice "
            "(told_first), the customer's contact about the order (contact_first), or the "
            "delivery or cancellation without either (not_told).",
            ["channel", "result"],
        )
        self.deliveries = counter(
            "kpistream_order_deliveries",
            "O6: delivered orders with a promised date, by whether they arrived by it.",
            ["channel", "on_time"],
        )

    def count(self, facts: list[Contribution]) -> None:
        """Count facts seen for the first time (the caller keeps them from repeating)."""
        child = self.child
        by_ident: dict[str, list[Contribution]] = defaultdict(list)
        for c in facts:
            by_ident[c.ident].append(c)
        for group in by_ident.values():
            names = {c.name for c in group}
            for c in group:
                channel = c.dims[0]
                name = c.name
                kind, _, rest = name.partition(":")
                if name == "placed":
                    child(self.placed, channel).inc()
                elif name == "cancelled":
                    child(self.cancelled, channel).inc()
                elif name == "confirmation_seconds":
                    child(self.confirmation, channel).observe(c.value)
                elif kind == "confirm_sla":
                    child(self.confirmation_sla, channel, rest).inc()
                elif name == "clicks:confirmed":
                    one = str("clicks:one" in names).lower()
                    child(self.one_click, channel, one).inc()
                elif kind == "ship_notice":
                    child(self.shipment_notice, channel, rest).inc()
                elif kind == "delay_notice":
                    child(self.delay_notice, channel, rest).inc()
                elif name == "on_time:delivered":
                    on_time = str("on_time:met" in names).lower()
                    child(self.deliveries, channel, on_time).inc()
