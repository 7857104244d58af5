"""The KPI messages of one customer window (O7, O8, H8): merged counts to values.

Customer facts have no dimensions: every value is for all customers (`{}`). H8's
change against the previous window uses the merge's carried values (merge.py): what a
window's message needs of the previous window of the same size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream.kpi.catalogue import KpiValue, Merged, _ratio
from stream.kpi.contrib import ALL_DIMS, NO_DIMS, Dims

CUSTOMER_KPI_NAMES = ("conversion_after_contact", "customer_retention", "complaint_growth")


def _per_1000(count: int, customers: int) -> float | None:
    return 1000.0 * count / customers if customers else None


def customer_window_values(
    merged: dict[Dims, Merged],
    size_ms: int,
    retention_window_ms: int,
    end_ms: int | None = None,
    customer_count: Callable[[int], float | None] | None = None,
) -> list[KpiValue]:
    """`customer_count(end_ms)`: the external `customer_count` indicator for the period
    holding the window's end, if reported; it is then H8's customer base instead of
    the customers with a recent order."""
    m = merged.get(NO_DIMS, Merged())
    whole = merged.get(ALL_DIMS)
    out: list[KpiValue] = []
    contacted, converted = m.n("conversion:contacted"), m.n("conversion:converted")
    if contacted:
        values = {"contacted": contacted, "converted": converted, "rate": converted / contacted}
        out.append(KpiValue("conversion_after_contact", {}, values, {}))
    base, retained = m.n("retention:base"), m.n("retention:retained")
    if size_ms == retention_window_ms and base:
        values = {"base": base, "retained": retained, "rate": retained / base}
        out.append(KpiValue("customer_retention", {}, values, {}))
    tickets, complaints = m.n("tickets"), m.n("complaints")
    active = round(whole.active_end.get("customers", 0)) if whole else 0
    moved = bool(whole and round(whole.active_delta.get("customers", 0)))
    external = None
    if customer_count is not None and end_ms is not None:
        external = customer_count(end_ms)
    if external is not None:
        active = round(external)
    if tickets or moved:
        growth: dict[str, Any] = {
            "tickets": tickets,
            "complaints": complaints,
            "active_customers": active,
            "tickets_per_1000": _per_1000(tickets, active),
            "complaints_per_1000": _per_1000(complaints, active),
            "complaints_per_1000_change": None,
            "complaint_growth": None,
            "customer_growth": None,
            "complaints_outgrow_customers": None,
            "external_customer_count": int(external is not None),
        }
        out.append(KpiValue("complaint_growth", {}, growth, {}))
    return out


def carried_customer_values(value: KpiValue) -> dict[str, Any] | None:
    if value.kpi != "complaint_growth":
        return None
    v = value.values
    return {k: v[k] for k in ("complaints", "active_customers", "complaints_per_1000")}


def fill_customer_change(value: KpiValue, previous: dict[str, Any] | None) -> None:
    """H8 against the previous window of the same size (None without one)."""
    if value.kpi != "complaint_growth" or previous is None:
        return
    v = value.values
    now_rate, before_rate = v["complaints_per_1000"], previous.get("complaints_per_1000")
    if now_rate is not None and before_rate is not None:
        v["complaints_per_1000_change"] = now_rate - before_rate
    growth = _growth(v["complaints"], previous.get("complaints"))
    customers = _growth(v["active_customers"], previous.get("active_customers"))
    v["complaint_growth"], v["customer_growth"] = growth, customers
    if growth is not None and customers is not None:
        v["complaints_outgrow_customers"] = int(growth > customers)


def _growth(now: float, before: float | None) -> float | None:
    ratio = _ratio(now, before) if before else None
    return None if ratio is None else ratio - 1.0
