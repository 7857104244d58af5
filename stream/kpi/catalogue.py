"""The KPI messages of one window: from merged counts and sketches to named values.

Every KPI of docs/kpis.md that has a window message is defined here, once: the names
of its values and how they come from the window's counts and sketches. Ratios are
computed from the merged counts (never averaged), and `None` when the denominator is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stream.kpi.contrib import ALL_DIMS, NO_DIMS, Dims
from stream.kpi.sketch import QuantileSketch
from stream.kpi.surveys import net_promoter_score
from stream.kpi.windows import format_duration_ms, window_end_ms

ACTIVE_STATUSES = ("new", "open", "pending", "on_hold")
METHODS = ("agent", "self_service", "automation", "phone")

# Latency KPIs: message name -> sample name.
LATENCY_KPIS = {
    "first_response_time": "first_response_seconds",
    "resolution_time": "resolution_seconds",
    "full_resolution_time": "full_resolution_seconds",
    "requester_wait_time": "requester_wait_seconds",
    "agent_work_time": "agent_work_seconds",
}
KPI_NAMES = (
    "tickets_active",
    *LATENCY_KPIS,
    "first_response_sla",
    "resolution_sla",
    "resolved_issues",
    "escalation_rate",
    "reopen_rate",
    "work_per_interaction",
    "value_settled",
    "csat",
    "nps",
    "self_service",
    "agent_productivity",
)


@dataclass(slots=True)
class Merged:
    """One dimension set of one window, merged over every partition."""

    counts: dict[str, float] = field(default_factory=dict)
    sketches: dict[str, QuantileSketch] = field(default_factory=dict)
    active_end: dict[str, float] = field(default_factory=dict)
    active_delta: dict[str, float] = field(default_factory=dict)  # net change in the window

    def merge(self, other: Merged) -> None:
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for k, sketch in other.sketches.items():
            if k in self.sketches:
                self.sketches[k].merge(sketch)
            else:
                self.sketches[k] = sketch.copy()
        for k, v in other.active_end.items():
            self.active_end[k] = self.active_end.get(k, 0) + v
        for k, v in other.active_delta.items():
            self.active_delta[k] = self.active_delta.get(k, 0) + v

    def n(self, name: str) -> int:
        return round(self.counts.get(name, 0))


def _ratio(good: float, total: float) -> float | None:
    return good / total if total else None


def _quantiles(
    sketch: QuantileSketch | None, prefix: str = "", suffix: str = "_seconds"
) -> dict[str, Any]:
    values = sketch.quantiles(_Q_FRACTIONS) if sketch is not None else [None, None, None]
    return {f"{prefix}p{q}{suffix}": v for q, v in zip((50, 90, 99), values, strict=True)}


_Q_FRACTIONS = (50 / 100, 90 / 100, 99 / 100)  # the divisions quantile(q / 100) makes


# --- the KPIs: (merged data) -> values, or None when the window has nothing to say ----
def _tickets_active(m: Merged) -> dict[str, Any] | None:
    """Sent for a window in which a count changed; a consumer keeps the last value."""
    if not any(round(v) for v in m.active_delta.values()):
        return None
    values = {s: round(m.active_end.get(s, 0)) for s in ACTIVE_STATUSES}
    return {**values, "active": sum(values.values())}


def _latency(sample: str) -> Callable[[Merged], dict[str, Any] | None]:
    def values(m: Merged) -> dict[str, Any] | None:
        sketch = m.sketches.get(sample)
        if sketch is None:
            return None
        count = sketch.count
        if not count:
            return None
        return {"count": count, "sum_seconds": sketch.sum, **_quantiles(sketch)}

    return values


def _sla(name: str) -> Callable[[Merged], dict[str, Any] | None]:
    def values(m: Merged) -> dict[str, Any] | None:
        met, breached = m.n(f"sla:{name}:met"), m.n(f"sla:{name}:breached")
        if not met + breached:
            return None
        total = met + breached
        return {"met": met, "breached": breached, "total": total, "attainment": met / total}

    return values


def _resolved(m: Merged) -> dict[str, Any] | None:
    by_method = {method: m.n(f"solved:{method}") for method in METHODS}
    solved = sum(by_method.values())
    return {"solved": solved, **by_method} if solved else None


def _escalation(m: Merged) -> dict[str, Any] | None:
    created, escalated = m.n("created"), m.n("escalated")
    c_created, c_escalated = m.n("created_complaint"), m.n("escalated_complaint")
    if not created and not escalated:
        return None
    return {
        "created": created,
        "escalated": escalated,
        "rate": _ratio(escalated, created),
        "complaints_created": c_created,
        "complaints_escalated": c_escalated,
        "complaint_rate": _ratio(c_escalated, c_created),
    }


def _reopen(m: Merged) -> dict[str, Any] | None:
    solved = sum(m.n(f"solved:{method}") for method in METHODS)
    reopened = m.n("reopened")
    if not solved and not reopened:
        return None
    return {"solved": solved, "reopened": reopened, "rate": _ratio(reopened, solved)}


def _work(m: Merged) -> dict[str, Any] | None:
    first, touches, one = m.n("first_solves"), m.n("touches"), m.n("one_touch")
    replies = m.n("agent_replies")
    handle = m.sketches.get("handle_seconds")
    handled = handle.count if handle is not None else 0
    if not first and not replies and not handled:
        return None
    p50, p90 = handle.quantiles((0.5, 0.9)) if handled and handle else (None, None)
    return {
        "first_solves": first,
        "touches": touches,
        "touches_per_solved": _ratio(touches, first),
        "one_touch": one,
        "one_touch_rate": _ratio(one, first),
        "agent_replies": replies,
        "handle_count": handled,
        "handle_p50_seconds": p50,
        "handle_p90_seconds": p90,
    }


def _csat(m: Merged) -> dict[str, Any] | None:
    answers = sum(m.n(f"csat:{score}") for score in range(1, 6))
    if not answers:
        return None
    satisfied = m.n("csat:4") + m.n("csat:5")
    return {"answers": answers, "satisfied": satisfied, "csat": satisfied / answers, "change": None}


def _nps(m: Merged) -> dict[str, Any] | None:
    promoters, passives = m.n("nps:promoter"), m.n("nps:passive")
    detractors = m.n("nps:detractor")
    answers = promoters + passives + detractors
    if not answers:
        return None
    return {
        "answers": answers,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "nps": net_promoter_score(promoters, detractors, answers),
    }


def _self_service(m: Merged) -> dict[str, Any] | None:
    sessions = m.n("selfservice:sessions")
    if not sessions:
        return None
    screens, clicks = m.sketches.get("selfservice_screens"), m.sketches.get("selfservice_clicks")
    succeeded = m.n("selfservice:succeeded")
    screens_p50, screens_p90 = screens.quantiles((0.5, 0.9)) if screens else (None, None)
    clicks_p50, clicks_p90 = clicks.quantiles((0.5, 0.9)) if clicks else (None, None)
    return {
        "sessions": sessions,
        "succeeded": succeeded,
        "success_rate": succeeded / sessions,
        "screens_p50": screens_p50,
        "screens_p90": screens_p90,
        "clicks_p50": clicks_p50,
        "clicks_p90": clicks_p90,
    }


# KPI -> (values, names of the sketches the message carries)
TICKET_KPIS: dict[str, tuple[Callable[[Merged], dict[str, Any] | None], tuple[str, ...]]] = {
    "tickets_active": (_tickets_active, ()),
    **{kpi: (_latency(sample), (sample,)) for kpi, sample in LATENCY_KPIS.items()},
    "first_response_sla": (_sla("first_response"), ()),
    "resolution_sla": (_sla("resolution"), ()),
    "resolved_issues": (_resolved, ()),
    "escalation_rate": (_escalation, ()),
    "reopen_rate": (_reopen, ()),
    "work_per_interaction": (_work, ("handle_seconds",)),
    "csat": (_csat, ()),
    "nps": (_nps, ()),
}


@dataclass(frozen=True, slots=True)
class KpiValue:
    kpi: str
    dims: dict[str, str]
    values: dict[str, Any]
    sketches: dict[str, dict[str, Any]]

    @property
    def dims_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.dims.items()) or "all"


def window_values(merged: dict[Dims, Merged]) -> list[KpiValue]:
    """Every KPI value of one window: per dimension set, and rolled up."""
    ticket_dims = {d: m for d, m in merged.items() if d not in (NO_DIMS, ALL_DIMS)}
    rollup = Merged()
    for m in ticket_dims.values():
        rollup.merge(m)
    whole = merged.get(ALL_DIMS)
    # The active counts of every dimension set, also those that did not change here.
    rollup.active_end = dict(whole.active_end) if whole else {}
    rollup.active_delta = dict(whole.active_delta) if whole else {}
    out: list[KpiValue] = []
    groups: Iterable[tuple[dict[str, str], Merged]] = [
        *(({"queue": q, "priority": p}, m) for (q, p), m in sorted(ticket_dims.items())),
        ({}, rollup),
    ]
    for dims, m in groups:
        for kpi, (compute, sketch_names) in TICKET_KPIS.items():
            values = compute(m)
            if values is not None:
                sketches = {n: m.sketches[n].to_dict() for n in sketch_names if n in m.sketches}
                out.append(KpiValue(kpi, dims, values, sketches))
        out += _value_settled(dims, m)
    sessions = merged.get(NO_DIMS)
    if sessions is not None:
        values = _self_service(sessions)
        if values is not None:
            names = ("selfservice_screens", "selfservice_clicks")
            sketches = {n: sessions.sketches[n].to_dict() for n in names if n in sessions.sketches}
            out.append(KpiValue("self_service", {}, values, sketches))
    seconds = sessions.counts.get("agent_seconds", 0.0) if sessions is not None else 0.0
    solved = rollup.n("solved:agent")
    if seconds or solved:
        hours = seconds / 3600.0
        values = {
            "agent_hours": hours,
            "solved_by_agents": solved,
            "solved_per_agent_hour": solved / hours if hours else None,
        }
        out.append(KpiValue("agent_productivity", {}, values, {}))
    return out


def _value_settled(dims: dict[str, str], m: Merged) -> list[KpiValue]:
    currencies = sorted(k.split(":", 1)[1] for k in m.counts if k.startswith("settled:"))
    out = []
    for currency in currencies:
        solves = m.n(f"settled_solves:{currency}")
        if solves:
            out.append(
                KpiValue(
                    "value_settled",
                    {**dims, "currency": currency},
                    {"amount": m.counts[f"settled:{currency}"], "solves": solves},
                    {},
                )
            )
    return out


def carried_values(value: KpiValue) -> dict[str, Any] | None:
    """What the next window's message of this KPI needs: H13's CSAT, for its change."""
    if value.kpi == "csat":
        return {"csat": value.values["csat"]}
    return None


def fill_change(value: KpiValue, previous: dict[str, Any] | None) -> None:
    """H13: CSAT change against the previous window (None without one)."""
    if value.kpi == "csat":
        before = None if previous is None else previous.get("csat")
        value.values["change"] = None if before is None else value.values["csat"] - before


def message_key(kpi: str, size_ms: int, start_text: str, dims_text: str) -> str:
    return f"{kpi}/{format_duration_ms(size_ms)}|{dims_text}|{start_text}"


def message(
    value: KpiValue,
    size_ms: int,
    start_ms: int,
    revision: int,
    final: bool,
    emitted_at_text: str,
    fmt: Callable[[int], str],
) -> tuple[str, dict[str, Any]]:
    """The kpi.windows.v1 message of one KPI value (schemas/kpi/kpi-window.v1)."""
    start = fmt(start_ms)
    end = fmt(window_end_ms(start_ms, size_ms))
    body = message_body(value, format_duration_ms(size_ms), start, end, revision, final)
    body["emitted_at"] = emitted_at_text
    body["schema_version"] = 1
    return message_key(value.kpi, size_ms, start, value.dims_text), body


def message_body(
    value: KpiValue, window: str, start: str, end: str, revision: int, final: bool
) -> dict[str, Any]:
    """`message()`'s body up to its sketches, from the window's texts (the merge spells
    them once per window); `emitted_at` and `schema_version` follow."""
    body: dict[str, Any] = {
        "kpi": value.kpi,
        "window": window,
        "window_start": start,
        "window_end": end,
        "dimensions": value.dims,
        "revision": revision,
        "is_final": final,
        "values": value.values,
    }
    if value.sketches:
        body["sketches"] = value.sketches
    return body
