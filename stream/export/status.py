"""The live status page's numbers: a summary of this worker's /metrics samples, and a
short history of it for the page's charts.

The summary is computed from the same samples Prometheus scrapes (never from a second
path into the KPI state), so the page and /metrics cannot disagree. The functions here
take plain `(name, labels, value)` samples; web.py reads them off the registry.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Sample = tuple[str, Mapping[str, str], float]

SLAS = ("first_response", "resolution")
HISTORY_POINTS = 180  # at one point per 5 s: the last 15 minutes
HISTORY_INTERVAL_MS = 5_000


def _ratio(good: float, total: float) -> float | None:
    return good / total if total else None


@dataclass
class _Queue:
    active: float = 0.0
    clocks: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            sla: {"met": 0.0, "breached": 0.0, "breaching": 0.0, "at_risk": 0.0} for sla in SLAS
        }
    )

    def as_json(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = {"queue": name, "active": int(self.active)}
        for sla, c in self.clocks.items():
            body[sla] = {
                "met_total": int(c["met"]),
                "breached_total": int(c["breached"]),
                "attainment": _ratio(c["met"], c["met"] + c["breached"]),
                "breaching": int(c["breaching"]),
                "at_risk": int(c["at_risk"]),
            }
        return body


def status_summary(samples: Iterable[Sample], now_ms: int) -> dict[str, Any]:
    """The key KPIs of this worker, now: what the status page shows."""
    queues: dict[str, _Queue] = defaultdict(_Queue)
    totals: dict[str, float] = defaultdict(float)
    csat: dict[str, float] = defaultdict(float)
    nps: dict[str, float] = defaultdict(float)
    percentiles: dict[str, dict[str, float]] = defaultdict(dict)
    window_responses: dict[str, float] = defaultdict(float)
    window_end: dict[str, float] = {}
    lag_seconds = 0.0
    lag_records = 0.0
    partitions = 0.0
    for name, labels, value in samples:
        if name == "kpistream_tickets_active":
            queues[labels["queue"]].active += value
        elif name == "kpistream_sla_total":
            queues[labels["queue"]].clocks[labels["sla"]][labels["result"]] += value
        elif name == "kpistream_sla_breaching_tickets":
            queues[labels["queue"]].clocks[labels["sla"]]["breaching"] += value
        elif name == "kpistream_sla_at_risk_tickets":
            queues[labels["queue"]].clocks[labels["sla"]]["at_risk"] += value
        elif name == "kpistream_first_response_window_all_seconds":
            percentiles[labels["window"]][f"p{labels['percentile']}"] = value
        elif name == "kpistream_first_response_window_responses":
            window_responses[labels["window"]] += value
        elif name == "kpistream_first_response_window_end_timestamp_seconds":
            window_end[labels["window"]] = value
        elif name == "kpistream_csat_responses_total":
            csat[labels["score"]] += value
        elif name == "kpistream_nps_responses_total":
            nps[labels["category"]] += value
        elif name == "kpistream_consumer_lag_seconds":
            lag_seconds = max(lag_seconds, value)
        elif name == "kpistream_consumer_lag_records":
            lag_records += value
        elif name == "kpistream_partitions_owned":
            partitions += value
        elif name in _TOTALS:
            totals[_TOTALS[name](labels)] += value
    csat_all = sum(csat.values())
    nps_all = sum(nps.values())
    orders_sla = totals["orders_confirmed_met"] + totals["orders_confirmed_missed"]
    deliveries = totals["deliveries_on_time"] + totals["deliveries_late"]
    return {
        "now_ms": now_ms,
        "pipeline": {
            "events_total": int(totals["events"]),
            "rejected_total": int(totals["rejected"]),
            "duplicates_total": int(totals["duplicates"]),
            "consumer_lag_seconds": lag_seconds,
            "consumer_lag_records": int(lag_records),
            "partitions_owned": int(partitions),
        },
        "tickets_active": int(sum(q.active for q in queues.values())),
        "sla": {
            sla: {
                "attainment": _ratio(
                    sum(q.clocks[sla]["met"] for q in queues.values()),
                    sum(q.clocks[sla]["met"] + q.clocks[sla]["breached"] for q in queues.values()),
                ),
                "breaching": int(sum(q.clocks[sla]["breaching"] for q in queues.values())),
                "at_risk": int(sum(q.clocks[sla]["at_risk"] for q in queues.values())),
            }
            for sla in SLAS
        },
        "first_response_windows": [
            {
                "window": window,
                "end_ms": int(window_end[window] * 1000) if window in window_end else None,
                "responses": int(window_responses.get(window, 0)),
                **{p: percentiles[window].get(p) for p in ("p50", "p90", "p99")},
            }
            for window in sorted(percentiles, key=_duration_key)
        ],
        "escalation": {
            "rate": _ratio(totals["escalated"], totals["created"]),
            "escalated_total": int(totals["escalated"]),
            "created_total": int(totals["created"]),
        },
        "csat": {
            "ratio": _ratio(csat["4"] + csat["5"], csat_all),
            "answers": int(csat_all),
        },
        "nps": {
            "score": 100 * (nps["promoter"] - nps["detractor"]) / nps_all if nps_all else None,
            "answers": int(nps_all),
        },
        "orders": {
            "placed_total": int(totals["orders_placed"]),
            "confirmed_within_60s": _ratio(totals["orders_confirmed_met"], orders_sla),
            "on_time_deliveries": _ratio(totals["deliveries_on_time"], deliveries),
        },
        # Queues in the order of their open work: the busiest first.
        "queues": [
            q.as_json(name)
            for name, q in sorted(queues.items(), key=lambda kv: (-kv[1].active, kv[0]))
        ],
    }


_TOTALS = {
    "kpistream_events_total": lambda labels: "events",
    "kpistream_events_rejected_total": lambda labels: "rejected",
    "kpistream_events_duplicate_total": lambda labels: "duplicates",
    "kpistream_tickets_created_total": lambda labels: "created",
    "kpistream_tickets_escalated_total": lambda labels: "escalated",
    "kpistream_orders_placed_total": lambda labels: "orders_placed",
    "kpistream_order_confirmation_sla_total": lambda labels: f"orders_confirmed_{labels['result']}",
    "kpistream_order_deliveries_total": lambda labels: (
        "deliveries_on_time" if labels["on_time"] == "true" else "deliveries_late"
    ),
}

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _duration_key(name: str) -> tuple[int, str]:
    """Sort window names like 1m, 1h, 1d by their length (unknown forms last)."""
    number, unit = name[:-1], name[-1:]
    if number.isdigit() and unit in _UNITS_MS:
        return int(number) * _UNITS_MS[unit], name
    return 2**62, name


class StatusHistory:
    """The last HISTORY_POINTS summaries' chart values, one per interval at most."""

    def __init__(
        self, points: int = HISTORY_POINTS, interval_ms: int = HISTORY_INTERVAL_MS
    ) -> None:
        self.interval_ms = interval_ms
        self.points: deque[dict[str, Any]] = deque(maxlen=points)

    def add(self, summary: Mapping[str, Any]) -> None:
        now_ms = int(summary["now_ms"])
        if self.points and now_ms - self.points[-1]["t_ms"] < self.interval_ms:
            return
        windows = summary["first_response_windows"]
        self.points.append(
            {
                "t_ms": now_ms,
                "events_total": summary["pipeline"]["events_total"],
                "tickets_active": summary["tickets_active"],
                "breaching": sum(s["breaching"] for s in summary["sla"].values()),
                "first_response_p90": windows[0]["p90"] if windows else None,
            }
        )

    def as_json(self) -> list[dict[str, Any]]:
        return list(self.points)
