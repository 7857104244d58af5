"""GET /kpis: the current KPI values as JSON, filtered by query parameters; and
GET /kpis/windows: the closed windows of the KPI topic, from the window store.

/kpis reads a snapshot, like /metrics. A bad parameter is answered with 400 and a
message that names it; nothing a client sends can make this raise.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream.export.window_store import WindowStore
from stream.kpi.catalogue import KPI_NAMES as TICKET_WINDOW_KPI_NAMES
from stream.kpi.events import PRIORITIES
from stream.kpi.order_catalogue import ORDER_KPI_NAMES
from stream.kpi.sketch import QuantileSketch
from stream.kpi.snapshot import QUANTILES, KpiSnapshot
from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms
from stream.kpi.windows import format_duration_ms

KPI_NAMES = ("tickets_active", "first_response", "sla")
WINDOW_KPI_NAMES = (*TICKET_WINDOW_KPI_NAMES, *ORDER_KPI_NAMES, "external_indicator")
_PARAMETERS = ("kpi", "window", "queue", "priority", "scope")
# scope=all (the default): this worker's partitions and those of every other worker of
# the group, merged; scope=local: this worker's only, with the sketches a merge needs.
SCOPES = ("all", "local")


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
    scope: str = "all"


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
    scope = params.get("scope") or "all"
    if scope not in SCOPES:
        raise QueryError("scope", f"scope {scope[:50]!r} is not one of {SCOPES}")
    return KpiQuery(
        kpis=frozenset(kpis),
        windows=frozenset(chosen) if chosen else None,
        queue=queue or None,
        priority=priority,
        scope=scope,
    )


def _matches(query: KpiQuery, queue: str, priority: str) -> bool:
    return (query.queue is None or query.queue == queue) and (
        query.priority is None or query.priority == priority
    )


def kpis_json(snap: KpiSnapshot, query: KpiQuery, sketches: bool = False) -> dict[str, Any]:
    """The snapshot's KPIs that the query asks for; with `sketches`, each first-response
    window carries its sketches too, so that answers of several workers can be merged."""
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
            entry = _window_entry(
                name,
                summary.start_ms,
                summary.end_ms,
                summary.overall,
                [
                    (queue, priority, sketch)
                    for (queue, priority), sketch in sorted(summary.by_dims.items())
                    if _matches(query, queue, priority)
                ],
                sketches,
            )
            windows.append(entry)
        body["first_response_windows"] = windows
    body["watermarks_ms"] = {str(p): w for p, w in sorted(snap.watermarks_ms.items())}
    return body


def _window_entry(
    name: str,
    start_ms: int,
    end_ms: int,
    overall: QuantileSketch,
    by_dims: list[tuple[str, str, QuantileSketch]],
    sketches: bool,
) -> dict[str, Any]:
    def cell(sketch: QuantileSketch) -> dict[str, Any]:
        out: dict[str, Any] = {"count": sketch.count, "seconds": _percentiles(sketch)}
        if sketches:
            out["sketch"] = sketch.to_dict()
        return out

    return {
        "window": name,
        "start_ms": start_ms,
        "end_ms": end_ms,
        **cell(overall),
        "by_queue_priority": [{"queue": q, "priority": p, **cell(sk)} for q, p, sk in by_dims],
    }


def _percentiles(sketch: Any) -> dict[str, float | None]:
    return {f"p{q * 100:g}": sketch.quantile(q) for q in QUANTILES}


def merge_answers(answers: list[dict[str, Any]], unreachable: list[str]) -> dict[str, Any]:
    """One answer for all partitions from the local answers (scope=local) of every
    worker: counts add up, sketches merge; never an average of percentiles.

    Each worker shows its newest window that all its partitions have made final; the
    merged window is the oldest of those, from the workers that show it (`complete`
    says whether that is every worker showing the size)."""
    partitions = sorted({p for a in answers for p in a.get("partitions", [])})
    body: dict[str, Any] = {"partitions": partitions}
    if any("tickets_active" in a for a in answers):
        active: Counter[tuple[str, str, str]] = Counter()
        for a in answers:
            for row in a.get("tickets_active", []):
                active[(row["queue"], row["priority"], row["status"])] += row["count"]
        body["tickets_active"] = [
            {"queue": q, "priority": p, "status": s, "count": n}
            for (q, p, s), n in sorted(active.items())
        ]
    if any("sla" in a for a in answers):
        clocks: Counter[tuple[str, str, str, str]] = Counter()
        for a in answers:
            for row in a.get("sla", []):
                clocks[(row["sla"], row["queue"], row["priority"], row["state"])] += row["tickets"]
        body["sla"] = [
            {"sla": sla, "queue": q, "priority": p, "state": st, "tickets": n}
            for (sla, q, p, st), n in sorted(clocks.items())
        ]
    if any("first_response_windows" in a for a in answers):
        body["first_response_windows"] = _merge_windows(answers)
    body["watermarks_ms"] = {k: v for a in answers for k, v in a.get("watermarks_ms", {}).items()}
    body["workers"] = len(answers)
    if unreachable:
        body["unreachable"] = unreachable  # their partitions are missing from the answer
    return body


def _merge_windows(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for a in answers:
        for window in a.get("first_response_windows", []):
            by_name.setdefault(window["window"], []).append(window)
    out = []
    for name, windows in sorted(
        by_name.items(), key=lambda kv: kv[1][0]["end_ms"] - kv[1][0]["start_ms"]
    ):
        start = min(w["start_ms"] for w in windows)
        chosen = [w for w in windows if w["start_ms"] == start]
        overall: QuantileSketch | None = None
        dims: dict[tuple[str, str], QuantileSketch] = {}
        for w in chosen:
            sketch = QuantileSketch.from_dict(w["sketch"])
            overall = sketch if overall is None else _merged(overall, sketch)
            for row in w["by_queue_priority"]:
                key = (row["queue"], row["priority"])
                part = QuantileSketch.from_dict(row["sketch"])
                dims[key] = _merged(dims[key], part) if key in dims else part
        assert overall is not None
        entry = _window_entry(
            name,
            start,
            chosen[0]["end_ms"],
            overall,
            [(q, p, sk) for (q, p), sk in sorted(dims.items())],
            False,
        )
        entry["complete"] = len(chosen) == len(windows)
        out.append(entry)
    return out


def _merged(a: QuantileSketch, b: QuantileSketch) -> QuantileSketch:
    out = a.copy()
    out.merge(b)
    return out


# --- GET /kpis/windows ---------------------------------------------------------------
_WINDOW_PARAMETERS = (
    "kpi",
    "window",
    "from",
    "to",
    "queue",
    "priority",
    "currency",
    "channel",
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
    channel: str | None = None
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
        channel=params.get("channel") or None,
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
        channel=query.channel,
        final_only=query.final_only,
        limit=query.limit + 1,
    )
    truncated = len(found) > query.limit
    found = found[: query.limit]
    return {"windows": found, "count": len(found), "truncated": truncated}
