"""Changelogged tables. Keys are strings, values JSON-ready dicts from the pure core.

- tickets: ticket_id -> ticket state (the ticket state machine, with its seen event ids)
- orders: order_id -> order state (its events, seen event ids, timers run out)
- indicators: name -> the latest reports of an external indicator, per period
- customers: customer_id -> the customer's recent activities (tickets, contacts, orders)
- scopes: "agent:<id>" / "customer:<id>" -> recent event ids of events without a ticket
- kpi_state: "<partition>|summary" (help-desk) and "orders|<partition>|summary" -> the
  marks of each input partition (its windows are rebuilt from tickets and orders)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TableT

from stream.settings import Settings


@dataclass(frozen=True)
class Tables:
    tickets: TableT[str, Any]
    orders: TableT[str, Any]
    indicators: TableT[str, Any]
    customers: TableT[str, Any]
    scopes: TableT[str, Any]
    kpi_state: TableT[str, Any]
    window_merge: TableT[str, Any]


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    def table(name: str, help_text: str, partitions: int | None = None) -> TableT[str, Any]:
        return app.Table(
            name,
            default=None,
            key_type=str,
            value_type=None,
            partitions=partitions or settings.partitions,
            help=help_text,
        )

    return Tables(
        tickets=table("tickets", "Ticket state by ticket_id."),
        orders=table("orders", "Order state by order_id."),
        customers=table("customers", "Customer activities by customer_id (O7, O8, H8)."),
        # Co-partitioned with the one-partition indicators.external topic.
        indicators=table("indicators", "External indicator reports by name.", 1),
        scopes=table("scopes", "Recent event ids of events without a ticket."),
        kpi_state=table("kpi_state", "Per-partition KPI aggregates."),
        # Co-partitioned with the one-partition window-partials topic.
        window_merge=table("window_merge", "Window partials and watermarks to merge.", 1),
    )
