"""GET /kpis: the current KPI values as JSON, filtered by query parameters.

Reads a snapshot, like /metrics. A bad parameter is answered with 400 and a message that
names it; nothing a client sends can make this raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream.kpi.events import PRIORITIES
from stream.kpi.snapshot import QUANTILES, KpiSnapshot
from stream.kpi.windows import format_duration_ms

KPI_NAMES = ("tickets_active", "first_response", "sla")
_PARAMETERS = ("kpi", "window", "queue", "priority")


class QueryError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class KpiQuery:
    kpis: frozenset[str] = frozenset(KPI_NAMES)
    windows: frozenset[str] | None = None  # None: every configured window
    queue: str | None = None
    priority: str | None = None


def _values(params: Mapping[str, str], name: str) -> list[str]:
    return [v.strip() for v in params.get(name, "").split(",") if v.strip()]


def parse_query(params: Mapping[str, str], windows: tuple[str, ...]) -> KpiQuery:
    """Validate the query parameters: kpi, window (comma lists), queue, priority."""
    unknown = sorted(set(params) - set(_PARAMETERS))
    if unknown:
        raise QueryError(unknown[0], f"unknown parameter {unknown[0]!r}; known: {_PARAMETERS}")
    kpis = _values(params, "kpi") or list(KPI_NAMES)
    for kpi in kpis:
        if kpi not in KPI_NAMES:
            raise QueryError("kpi", f"kpi {kpi[:50]!r} is not one of {KPI_NAMES}")
    chosen = _values(params, "window")
    for window in chosen:
        if window not in windows:
            raise QueryError("window", f"window {window[:50]!r} is not one of {windows}")
    priority = params.get("priority")
    if priority is not None and priority not in PRIORITIES:
        raise QueryError("priority", f"priority {priority[:50]!r} is not one of {PRIORITIES}")
    queue = params.get("queue")
    return KpiQuery(
        kpis=frozenset(kpis),
        windows=frozenset(chosen) if chosen else None,
        queue=queue or None,
        priority=priority,
    )


def _matches(query: KpiQuery, queue: str, priority: str) -> bool:
    return (query.queue is None or query.queue == queue) and (
        query.priority is None or query.priority == priority
    )


def kpis_json(snap: KpiSnapshot, query: KpiQuery) -> dict[str, Any]:
    """The snapshot's KPIs that the query asks for."""
    body: dict[str, Any] = {"partitions": list(snap.partitions)}
    if "tickets_active" in query.kpis:
        body["tickets_active"] = [
            {"queue": q, "priority": p, "status": s, "count": n}
            for (q, p, s), n in sorted(snap.active.items())
            if _matches(query, q, p)
        ]
    if "sla" in query.kpis:
        body["sla"] = [
            {"sla": sla, "queue": q, "priority": p, "state": state, "tickets": n}
            for (sla, q, p, state), n in sorted(snap.sla_clocks.items())
            if _matches(query, q, p)
        ]
    if "first_response" in query.kpis:
        windows = []
        for size, summary in sorted(snap.first_response_windows.items()):
            name = format_duration_ms(size)
            if query.windows is not None and name not in query.windows:
                continue
            windows.append(
                {
                    "window": name,
                    "start_ms": summary.start_ms,
                    "end_ms": summary.end_ms,
                    "count": summary.overall.count,
                    "seconds": _percentiles(summary.overall),
                    "by_queue_priority": [
                        {
                            "queue": queue,
                            "priority": priority,
                            "count": sketch.count,
                            "seconds": _percentiles(sketch),
                        }
                        for (queue, priority), sketch in sorted(summary.by_dims.items())
                        if _matches(query, queue, priority)
                    ],
                }
            )
        body["first_response_windows"] = windows
    body["watermarks_ms"] = {str(p): w for p, w in sorted(snap.watermarks_ms.items())}
    return body


def _percentiles(sketch: Any) -> dict[str, float | None]:
    return {f"p{q * 100:g}": sketch.quantile(q) for q in QUANTILES}
