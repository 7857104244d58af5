"""The KPI messages of one order window (O1-O6): merged counts and sketches to values.

The order half of catalogue.py, with the same rules: ratios from merged counts, `None`
when the denominator is 0, a KPI left out of a window it has nothing to say about. Each
KPI is sent per sales channel (`{channel}`) and for all orders (`{}`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream.kpi.catalogue import KpiValue, Merged, _quantiles, _ratio
from stream.kpi.contrib import ALL_DIMS, NO_DIMS, Dims

CONFIRMATION_SAMPLE = "confirmation_seconds"


def _orders(m: Merged) -> dict[str, Any] | None:
    placed, cancelled = m.n("placed"), m.n("cancelled")
    shipped, delivered, delayed = m.n("shipped"), m.n("delivered"), m.n("delayed")
    if not placed + cancelled + shipped + delivered + delayed:
        return None
    return {
        "placed": placed,
        "cancelled": cancelled,
        "shipped": shipped,
        "delayed": delayed,
        "delivered": delivered,
    }


def _confirmation_time(m: Merged) -> dict[str, Any] | None:
    sketch = m.sketches.get(CONFIRMATION_SAMPLE)
    if sketch is None or not sketch.count:
        return None
    return {"count": sketch.count, "sum_seconds": sketch.sum, **_quantiles(sketch)}


def _confirmation_sla(m: Merged) -> dict[str, Any] | None:
    met, missed = m.n("confirm_sla:met"), m.n("confirm_sla:missed")
    if not met + missed:
        return None
    return {"met": met, "missed": missed, "total": met + missed, "attainment": met / (met + missed)}


def _one_click(m: Merged) -> dict[str, Any] | None:
    confirmed, one = m.n("clicks:confirmed"), m.n("clicks:one")
    if not confirmed:
        return None
    return {"confirmed": confirmed, "one_click": one, "rate": one / confirmed}


def _shipment_notice(m: Merged) -> dict[str, Any] | None:
    met, missed = m.n("ship_notice:met"), m.n("ship_notice:missed")
    if not met + missed:
        return None
    return {"notified": met, "missed": missed, "total": met + missed, "rate": met / (met + missed)}


def _delay_notice(m: Merged) -> dict[str, Any] | None:
    told = m.n("delay_notice:told_first")
    contact, untold = m.n("delay_notice:contact_first"), m.n("delay_notice:not_told")
    total = told + contact + untold
    if not total:
        return None
    return {
        "told_first": told,
        "contact_first": contact,
        "not_told": untold,
        "total": total,
        "rate": told / total,
    }


def _on_time(m: Merged) -> dict[str, Any] | None:
    delivered, met = m.n("on_time:delivered"), m.n("on_time:met")
    if not delivered:
        return None
    return {"delivered": delivered, "on_time": met, "rate": _ratio(met, delivered)}


# KPI -> (values, names of the sketches the message carries)
ORDER_KPIS: dict[str, tuple[Callable[[Merged], dict[str, Any] | None], tuple[str, ...]]] = {
    "orders": (_orders, ()),
    "order_confirmation_time": (_confirmation_time, (CONFIRMATION_SAMPLE,)),
    "order_confirmation_sla": (_confirmation_sla, ()),
    "one_click_confirmation": (_one_click, ()),
    "shipment_notice": (_shipment_notice, ()),
    "delay_notice": (_delay_notice, ()),
    "on_time_delivery": (_on_time, ()),
}
ORDER_KPI_NAMES = tuple(ORDER_KPIS)


def order_window_values(merged: dict[Dims, Merged]) -> list[KpiValue]:
    """Every order KPI value of one window: per channel, and for all orders."""
    channels = {d: m for d, m in merged.items() if d not in (NO_DIMS, ALL_DIMS)}
    rollup = Merged()
    for m in channels.values():
        rollup.merge(m)
    groups = [*(({"channel": c}, m) for (c, _), m in sorted(channels.items())), ({}, rollup)]
    out: list[KpiValue] = []
    for dims, m in groups:
        for kpi, (compute, sketch_names) in ORDER_KPIS.items():
            values = compute(m)
            if values is not None:
                sketches = {n: m.sketches[n].to_dict() for n in sketch_names if n in m.sketches}
                out.append(KpiValue(kpi, dims, values, sketches))
    return out
