"""The batch oracle: an obviously-correct reference for the help-desk KPIs.

It shares no code with the streaming core. It takes every event at once, drops repeated
event ids, sorts by event time and answers each KPI by looking at a ticket's whole
history: "the latest status", "the earliest public agent reply", and so on.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.scrape import Samples, by, first_response_sums, total

ACTIVE = {"new", "open", "pending", "on_hold"}
FIRST_RESPONSE_TARGET_MS = {
    "urgent": 3_600_000,
    "high": 4 * 3_600_000,
    "normal": 24 * 3_600_000,
    "low": 48 * 3_600_000,
}
RESOLUTION_TARGET_MS = 48 * 3_600_000


@dataclass
class OracleResult:
    active: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    first_response_seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    solved_by_method: Counter[str] = field(default_factory=Counter)
    reopened: int = 0
    csat_by_score: Counter[int] = field(default_factory=Counter)
    sla: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # sla, priority, result
    requester_wait_seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    events: int = 0
    duplicates: int = 0


def _latest(history: list[dict[str, Any]], at_or_before: int | None, pick: Any) -> Any:
    """The value of the latest event (by time) that sets it, optionally as of a time."""
    value = None
    for event in history:
        if at_or_before is not None and event["t"] > at_or_before:
            break
        picked = pick(event)
        if picked is not None:
            value = picked
    return value


def _status(event: dict[str, Any]) -> str | None:
    return {
        "ticket.created": "new",
        "ticket.solved": "solved",
        "ticket.closed": "closed",
        "ticket.reopened": "open",
    }.get(event["type"]) or (event["status"] if event["type"] == "ticket.status_changed" else None)


def _queue(event: dict[str, Any]) -> str | None:
    return event.get("queue") if event["type"] in ("ticket.created", "ticket.assigned") else None


def _priority(event: dict[str, Any]) -> str | None:
    kinds = ("ticket.created", "ticket.priority_changed")
    return event.get("priority") if event["type"] in kinds else None


def _requester_wait_ms(history: list[dict[str, Any]], created: int) -> tuple[int, int] | None:
    """(first solve time, time spent in new/open until then), walking the status changes
    in event time; None if never solved. Pending, on_hold, solved and closed pause it."""
    waiting = ("new", "open")
    since: int | None = created
    total_ms = 0
    for event in history:
        new = _status(event)
        if new is None or event["type"] == "ticket.created":
            continue
        if since is not None and new not in waiting:
            total_ms += max(0, event["t"] - since)
            since = None
        elif since is None and new in waiting:
            since = event["t"]
        if event["type"] == "ticket.solved":
            return event["t"], total_ms
    return None


def compute(events: list[dict[str, Any]], watermark_ms: int) -> OracleResult:
    """`events`: dicts with `t` (event time, ms) plus the event's JSON fields, in any
    order, duplicates included. `watermark_ms`: the clock at the end, for SLA clocks
    still running (breached if it has passed their target)."""
    result = OracleResult()
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["event_id"] in seen:
            result.duplicates += 1
            continue
        seen.add(event["event_id"])
        unique.append(event)
    result.events = len(unique)
    tickets: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(unique, key=lambda e: e["t"]):
        tickets.setdefault(event["ticket_id"], []).append(event)

    for history in tickets.values():
        creations = [e for e in history if e["type"] == "ticket.created"]
        if not creations:
            continue
        created = creations[0]["t"]
        status = _latest(history, None, _status)
        queue = _latest(history, None, _queue)
        priority = _latest(history, None, _priority)
        if status in ACTIVE:
            result.active[(queue, priority, status)] += 1

        replies = [
            e["t"]
            for e in history
            if e["type"] == "ticket.replied" and e["author"] == "agent" and e["public"] is True
        ]
        first_reply = min(replies) if replies else None
        if first_reply is not None:
            dims = (_latest(history, first_reply, _queue), _latest(history, first_reply, _priority))
            latency = max(0, first_reply - created) / 1000.0
            result.first_response_seconds.setdefault(dims, []).append(latency)

        solves = [e for e in history if e["type"] == "ticket.solved"]
        result.solved_by_method.update(e["method"] for e in solves)
        result.reopened += sum(1 for e in history if e["type"] == "ticket.reopened")
        result.csat_by_score.update(e["score"] for e in history if e["type"] == "survey.csat")

        wait = _requester_wait_ms(history, created)
        if wait is not None:
            solved_at, wait_ms = wait
            dims = (_latest(history, solved_at, _queue), _latest(history, solved_at, _priority))
            result.requester_wait_seconds.setdefault(dims, []).append(wait_ms / 1000.0)

        sla_priority = creations[0]["priority"]
        first_solve = min((e["t"] for e in solves), default=None)
        first_close = min((e["t"] for e in history if e["type"] == "ticket.closed"), default=None)
        clocks = (
            (
                "first_response",
                first_reply,
                (first_solve, first_close),
                FIRST_RESPONSE_TARGET_MS[sla_priority],
            ),
            ("resolution", first_solve, (first_close,), RESOLUTION_TARGET_MS),
        )
        for sla, answer, stoppers, target in clocks:
            stops = [t for t in (answer, *stoppers) if t is not None]
            if stops:
                stop = min(stops)
                if stop - created > target:
                    result.sla[(sla, sla_priority, "breached")] += 1
                elif stop == answer:
                    result.sla[(sla, sla_priority, "met")] += 1
            elif watermark_ms >= created + target:
                result.sla[(sla, sla_priority, "breached")] += 1
    return result


def assert_metrics_match(metrics: Samples, expected: OracleResult) -> None:
    """What /metrics shows equals what the oracle computed, KPI by KPI."""
    assert by(metrics, "kpistream_tickets_active", "queue", "priority", "status") == Counter(
        expected.active
    )
    counts = by(metrics, "kpistream_first_response_seconds_count", "queue", "priority")
    assert counts == Counter({k: len(v) for k, v in expected.first_response_seconds.items()})
    sums = first_response_sums(metrics)
    for dims, values in expected.first_response_seconds.items():
        assert math.isclose(sums[dims], sum(values), rel_tol=1e-9, abs_tol=1e-6)
    assert by(metrics, "kpistream_tickets_solved_total", "method") == Counter(
        {(m,): n for m, n in expected.solved_by_method.items()}
    )
    assert total(metrics, "kpistream_tickets_reopened_total") == expected.reopened
    assert by(metrics, "kpistream_csat_responses_total", "score") == Counter(
        {(str(s),): n for s, n in expected.csat_by_score.items()}
    )
    assert by(metrics, "kpistream_sla_total", "sla", "priority", "result") == expected.sla
    waits = by(metrics, "kpistream_requester_wait_seconds_count", "queue", "priority")
    assert waits == Counter({k: len(v) for k, v in expected.requester_wait_seconds.items()})
    wait_sums = {
        (lab["queue"], lab["priority"]): value
        for lab, value in metrics.get("kpistream_requester_wait_seconds_sum", [])
    }
    for dims, values in expected.requester_wait_seconds.items():
        assert math.isclose(wait_sums[dims], sum(values), rel_tol=1e-9, abs_tol=1e-6)
