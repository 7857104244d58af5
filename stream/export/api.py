"""GET /kpis: the current KPI values as JSON, filtered by query parameters; and
GET /kpis/windows: the closed windows of the KPI topic, from the window store.

/kpis reads a snapshot, like /metrics. A bad parameter is answered with 400 and a
message that names it; nothing a client sends can make this raise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream.export.window_store import WindowStore
from stream.kpi.catalogue import KPI_NAMES as WINDOW_KPI_NAMES
from stream.kpi.events import PRIORITIES
from stream.kpi.snapshot import QUANTILES, KpiSnapshot
from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms
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


# --- GET /kpis/windows ---------------------------------------------------------------
_WINDOW_PARAMETERS = (
    "kpi",
    "window",
    "from",
    "to",
    "queue",
    "priority",
    "currency",
    "final",
    "limit",
)
DEFAULT_LIMIT = 1000
_EPOCH_MS = re.compile(r"-?[0-9]{1,15}")
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class WindowsQuery:
    kpis: frozenset[str] | None = None  # None: every KPI
    windows: frozenset[str] | None = None  # None: every configured window
    from_ms: int | None = None  # window_start >= from_ms
    to_ms: int | None = None  # window_start < to_ms
    queue: str | None = None
    priority: str | None = None
    currency: str | None = None
    final_only: bool = False
    limit: int = DEFAULT_LIMIT


def _time_ms(params: Mapping[str, str], name: str) -> int | None:
    """RFC 3339 with an offset, or integer epoch milliseconds."""
    text = params.get(name, "").strip()
    if not text:
        return None
    if _EPOCH_MS.fullmatch(text):
        return int(text)
    try:
        return parse_rfc3339_ms(text)
    except TimestampError:
        raise QueryError(
            name,
            f"{name} {text[:50]!r} is neither RFC 3339 with an offset "
            "(2026-11-24T09:00:00Z) nor epoch milliseconds",
        ) from None


def parse_windows_query(params: Mapping[str, str], windows: tuple[str, ...]) -> WindowsQuery:
    """Validate the query parameters of /kpis/windows (README, "The HTTP API")."""
    unknown = sorted(set(params) - set(_WINDOW_PARAMETERS))
    if unknown:
        raise QueryError(
            unknown[0], f"unknown parameter {unknown[0][:50]!r}; known: {_WINDOW_PARAMETERS}"
        )
    kpis = _values(params, "kpi")
    for kpi in kpis:
        if kpi not in WINDOW_KPI_NAMES:
            raise QueryError("kpi", f"kpi {kpi[:50]!r} is not one of {WINDOW_KPI_NAMES}")
    chosen = _values(params, "window")
    for window in chosen:
        if window not in windows:
            raise QueryError("window", f"window {window[:50]!r} is not one of {windows}")
    from_ms, to_ms = _time_ms(params, "from"), _time_ms(params, "to")
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise QueryError("to", "to must be later than from (window_start is in [from, to))")
    priority = params.get("priority") or None
    if priority is not None and priority not in PRIORITIES:
        raise QueryError("priority", f"priority {priority[:50]!r} is not one of {PRIORITIES}")
    final = params.get("final", "").strip().lower()
    if final not in ("", "true", "false"):
        raise QueryError("final", f"final {final[:50]!r} is neither true nor false")
    limit_text = params.get("limit", "").strip()
    limit = DEFAULT_LIMIT
    if limit_text:
        if not re.fullmatch(r"[0-9]{1,6}", limit_text):
            raise QueryError("limit", f"limit {limit_text[:50]!r} is not an integer")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError("limit", f"limit {limit} is not between 1 and {MAX_LIMIT}")
    return WindowsQuery(
        kpis=frozenset(kpis) if kpis else None,
        windows=frozenset(chosen) if chosen else None,
        from_ms=from_ms,
        to_ms=to_ms,
        queue=params.get("queue") or None,
        priority=priority,
        currency=params.get("currency") or None,
        final_only=final == "true",
        limit=limit,
    )


def windows_json(store: WindowStore, query: WindowsQuery) -> dict[str, Any]:
    """The stored window messages the query asks for, oldest window start first;
    truncated when more than `limit` match."""
    found = store.query(
        kpi=query.kpis,
        window=query.windows,
        from_ms=query.from_ms,
        to_ms=query.to_ms,
        queue=query.queue,
        priority=query.priority,
        currency=query.currency,
        final_only=query.final_only,
        limit=query.limit + 1,
    )
    truncated = len(found) > query.limit
    found = found[: query.limit]
    return {"windows": found, "count": len(found), "truncated": truncated}
