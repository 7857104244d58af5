"""The window oracle: every `kpi.windows.v1` value, computed from docs/kpis.md alone.

It shares no code with the streaming core (only the RFC 3339 helpers of
`stream.kpi.timefmt`), so that a bug in the core cannot hide in the reference. It takes
every event at once, drops repeated event ids, orders each ticket's history as the spec
says ("Ticket histories") and answers each KPI by looking at that whole history. There
is no watermark here: the oracle knows the end of every story, so it computes what the
*final* messages must say; `assert_windows_match` compares only those.

Readable over clever: each KPI is a few lines over one ticket's history, in the spec's words.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms

Dims = tuple[tuple[str, str], ...]
WindowKey = tuple[str, int, int, Dims]  # (kpi, size_ms, start_ms, dims)

HOUR_MS = 3_600_000
PRIORITIES = ("urgent", "high", "normal", "low")
DEFAULT_FIRST_RESPONSE_TARGET_MS: dict[str, int] = {
    "urgent": HOUR_MS,
    "high": 4 * HOUR_MS,
    "normal": 24 * HOUR_MS,
    "low": 48 * HOUR_MS,
}
DEFAULT_RESOLUTION_TARGET_MS: dict[str, int] = {priority: 48 * HOUR_MS for priority in PRIORITIES}

ACTIVE_STATUSES = ("new", "open", "pending", "on_hold")
# The statuses in which the requester-wait and agent-work clocks run (H4).
WORKING_STATUSES = frozenset({"new", "open"})
SOLVE_METHODS = ("agent", "self_service", "automation", "phone")
# Event types that belong to a ticket's history. agent.shift (H12 is not on the topic yet)
# and selfservice.session (counted on its own, H15) are not among them.
TICKET_EVENT_TYPES = frozenset(
    {
        "ticket.created",
        "ticket.replied",
        "ticket.status_changed",
        "ticket.assigned",
        "ticket.priority_changed",
        "ticket.escalated",
        "ticket.solved",
        "ticket.reopened",
        "ticket.closed",
        "survey.csat",
        "survey.nps",
    }
)
# Types that set the status to a fixed value ("Ticket histories").
STATUS_SET_BY = {"ticket.solved": "solved", "ticket.closed": "closed", "ticket.reopened": "open"}
# The latency KPIs: all carry count, sum_seconds and p50/p90/p99 (H2, H4).
LATENCY_KPIS = (
    "first_response_time",
    "resolution_time",
    "full_resolution_time",
    "requester_wait_time",
    "agent_work_time",
)
# A value name is a percentile when one of its `_`-separated words is like `p90`.
_PERCENTILE_WORD = re.compile(r"p[0-9]+")
_WINDOW_TEXT = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}
# Dimension names in the order they appear in a WindowKey.
_DIMENSION_ORDER = ("queue", "priority", "currency")


# --------------------------------------------------------------------------------------
# One ticket's history


@dataclass(frozen=True)
class TicketState:
    """What the spec calls a ticket's state: its queue, priority and status."""

    queue: str
    priority: str
    status: str


def event_order_key(event: dict[str, Any]) -> tuple[int, int, str]:
    """The spec's order of a ticket's events: occurred_at, then ticket.created first,
    then event_id. It makes every KPI a function of the set of events, not of arrival."""
    return (event["t"], 0 if event["type"] == "ticket.created" else 1, event["event_id"])


def apply_event(state: TicketState | None, event: dict[str, Any]) -> TicketState | None:
    """The state after `event`. Before the creation there is no state, and events
    ordered before it do not set one: the walk starts at the creation."""
    kind = event["type"]
    if kind == "ticket.created":
        # A second creation (another event_id) changes nothing: the first one counts.
        return TicketState(event["queue"], event["priority"], "new") if state is None else state
    if state is None:
        return None
    if kind == "ticket.status_changed":
        return replace(state, status=event["status"])
    if kind in STATUS_SET_BY:
        return replace(state, status=STATUS_SET_BY[kind])
    if kind == "ticket.assigned":
        return replace(state, queue=event["queue"])
    if kind == "ticket.priority_changed":
        return replace(state, priority=event["priority"])
    return state


def is_public_agent_reply(event: dict[str, Any]) -> bool:
    """A touch and a first-response candidate: customer replies, internal notes and
    system messages are neither (H2, H10)."""
    return (
        event["type"] == "ticket.replied"
        and event.get("author") == "agent"
        and event.get("public") is True
    )


class TicketHistory:
    """One created ticket's events in the spec's order, with the two views the spec
    defines: the dimensions of an event (the state just before it, by order) and the
    state at a time T (after every event with occurred_at < T)."""

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        self.events = sorted(events, key=event_order_key)
        self.creation_index = next(
            i for i, event in enumerate(self.events) if event["type"] == "ticket.created"
        )
        creation = self.events[self.creation_index]
        self.created_at: int = creation["t"]
        # P0: the SLA targets and the SLA priority dimension come from the creation.
        self.creation_priority: str = creation["priority"]
        self.subject_kind: str | None = creation.get("subject_kind")
        # Events ordered before the creation take the state the creation sets: they
        # count, but they have no state of their own to be counted under.
        self.initial_state = TicketState(creation["queue"], creation["priority"], "new")
        self._times = [event["t"] for event in self.events]
        self.last_event_at: int = self._times[-1]
        self._before: list[TicketState] = []
        self._after: list[TicketState | None] = []
        state: TicketState | None = None
        for event in self.events:
            self._before.append(state if state is not None else self.initial_state)
            state = apply_event(state, event)
            self._after.append(state)
        # Inactive for good after its last event (solved or closed): from then on its
        # tickets_active membership is None, so the per-window loop can skip it.
        self.ends_inactive = state is None or state.status not in ACTIVE_STATUSES

    def dims_of(self, index: int) -> TicketState:
        """The dimensions of the event at `index`: the state just before it."""
        return self._before[index]

    def state_at(self, time_ms: int) -> TicketState | None:
        """The state after every event with occurred_at < time_ms; None before the
        ticket exists (its creation is not before time_ms)."""
        count_before = bisect.bisect_left(self._times, time_ms)
        return self._after[count_before - 1] if count_before else None

    def result_state_at(self, time_ms: int) -> TicketState:
        """The state at a time for an SLA result, which can lie before the creation
        (a reply stamped early): then the creation's state, as for events."""
        state = self.state_at(time_ms)
        return state if state is not None else self.initial_state

    def active_membership_at(self, time_ms: int) -> TicketState | None:
        """The (queue, priority, status) the ticket is counted under in tickets_active
        at time_ms, or None when it does not exist yet or is not active."""
        state = self.state_at(time_ms)
        return state if state is not None and state.status in ACTIVE_STATUSES else None

    def indexes(self, kind: str) -> list[int]:
        """The positions (in order) of the events of one type."""
        return [i for i, event in enumerate(self.events) if event["type"] == kind]

    def working_ms(self, until_index: int) -> int:
        """Time from the creation to the event at `until_index` spent in new/open: the
        requester-wait and agent-work clocks (H4). Each event's resulting status holds
        until the next event; pre-creation stops give 0 (empty range)."""
        total = 0
        for i in range(self.creation_index, until_index):
            state = self._after[i]
            if state is not None and state.status in WORKING_STATUSES:
                total += self._times[i + 1] - self._times[i]
        return total


# --------------------------------------------------------------------------------------
# Collecting contributions per window


def window_start(time_ms: int, size_ms: int) -> int:
    """Start of the epoch-aligned tumbling window [start, start + size) holding time_ms."""
    return time_ms // size_ms * size_ms


def ticket_dims(state: TicketState) -> list[Dims]:
    """The two dimension sets of the ticket KPIs: {queue, priority} and {}."""
    return [(("queue", state.queue), ("priority", state.priority)), ()]


@dataclass
class _Cell:
    """What one (kpi, size, start, dims) window has collected before it is formatted."""

    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    amount: Decimal = Decimal(0)


class _Collector:
    """Adds each contribution to the window of every size holding its time, once per
    dimension set. A cell exists only when something was added: that is when the spec
    emits a message (apart from tickets_active, computed on its own)."""

    def __init__(self, sizes_ms: tuple[int, ...]) -> None:
        self.sizes_ms = sizes_ms
        self.cells: dict[WindowKey, _Cell] = defaultdict(_Cell)

    def add(
        self,
        kpi: str,
        time_ms: int,
        dims_sets: list[Dims],
        *,
        counts: dict[str, int] | None = None,
        samples: dict[str, float] | None = None,
        amount: Decimal | None = None,
    ) -> None:
        for size_ms in self.sizes_ms:
            start = window_start(time_ms, size_ms)
            for dims in dims_sets:
                cell = self.cells[(kpi, size_ms, start, dims)]
                cell.counts.update(counts or {})
                for name, value in (samples or {}).items():
                    cell.samples[name].append(value)
                if amount is not None:
                    cell.amount += amount


def _seconds(milliseconds: int) -> float:
    return milliseconds / 1000.0


def _clock_result(
    history: TicketHistory, answer: int | None, stoppers: list[int | None], deadline_ms: int
) -> tuple[str, int] | None:
    """(result, time) of one SLA clock (H3, H5), or None for no result.

    The clock stops at the earliest (in order) of its answer and its stoppers. The
    oracle sees the whole history, so a clock that never stops breaches at D, like one
    that stops after D; stopping exactly at D is "at or before D"."""
    stops = [index for index in (answer, *stoppers) if index is not None]
    if not stops:
        return ("breached", deadline_ms)
    stop = min(stops)
    if history.events[stop]["t"] > deadline_ms:
        return ("breached", deadline_ms)
    if stop == answer:
        return ("met", history.events[stop]["t"])
    return None


def _collect_ticket(
    history: TicketHistory,
    collector: _Collector,
    first_response_target_ms: dict[str, int],
    resolution_target_ms: dict[str, int],
) -> None:
    """Every window contribution of one created ticket, KPI by KPI as in docs/kpis.md."""
    events = history.events
    created_at = history.created_at
    replies = [i for i, event in enumerate(events) if is_public_agent_reply(event)]
    solves = history.indexes("ticket.solved")
    closes = history.indexes("ticket.closed")
    first_reply = replies[0] if replies else None
    first_solve = solves[0] if solves else None
    first_close = closes[0] if closes else None

    def at(index: int) -> int:
        return int(events[index]["t"])

    def dims(index: int) -> list[Dims]:
        return ticket_dims(history.dims_of(index))

    def latency(kpi: str, index: int, milliseconds: int) -> None:
        collector.add(kpi, at(index), dims(index), samples={"latency": _seconds(milliseconds)})

    # H2 first response: at R, in the dimensions of the reply.
    if first_reply is not None:
        latency("first_response_time", first_reply, max(0, at(first_reply) - created_at))

    # H3, H5: two clocks against the targets of P0, dims = queue at the result and P0.
    priority = history.creation_priority
    clocks = (
        (
            "first_response_sla",
            first_reply,
            [first_solve, first_close],
            first_response_target_ms[priority],
        ),
        ("resolution_sla", first_solve, [first_close], resolution_target_ms[priority]),
    )
    for kpi, answer, stoppers, target_ms in clocks:
        result = _clock_result(history, answer, stoppers, created_at + target_ms)
        if result is not None:
            outcome, result_at = result
            queue = history.result_state_at(result_at).queue
            sla_dims: list[Dims] = [(("queue", queue), ("priority", priority)), ()]
            collector.add(kpi, result_at, sla_dims, counts={outcome: 1})

    # H4: first resolution and requester wait at S1; full resolution and agent work at X1.
    if first_solve is not None:
        latency("resolution_time", first_solve, max(0, at(first_solve) - created_at))
        latency("requester_wait_time", first_solve, history.working_ms(first_solve))
    if first_close is not None:
        solves_before_close = [i for i in solves if i < first_close]
        finish = solves_before_close[-1] if solves_before_close else first_close
        latency("full_resolution_time", first_close, max(0, at(finish) - created_at))
        latency("agent_work_time", first_close, history.working_ms(first_close))

    # H7: the creation in the dimensions it sets; escalations at their time.
    complaint = history.subject_kind == "complaint"
    collector.add(
        "escalation_rate",
        created_at,
        dims(history.creation_index),
        counts={"created": 1, "complaints_created": int(complaint)},
    )
    for index in history.indexes("ticket.escalated"):
        collector.add(
            "escalation_rate",
            at(index),
            dims(index),
            counts={"escalated": 1, "complaints_escalated": int(complaint)},
        )

    # H6, H9, H11: every solve at its time and in its dimensions.
    for index in solves:
        solve = events[index]
        counts = {"solved": 1, solve["method"]: 1}
        collector.add("resolved_issues", at(index), dims(index), counts=counts)
        collector.add("reopen_rate", at(index), dims(index), counts={"solved": 1})
        money = solve.get("settled_amount")
        if money is not None:
            state = history.dims_of(index)
            currency = money["currency"]
            value_dims: list[Dims] = [
                (("queue", state.queue), ("priority", state.priority), ("currency", currency)),
                (("currency", currency),),
            ]
            collector.add(
                "value_settled",
                at(index),
                value_dims,
                counts={"solves": 1},
                amount=Decimal(money["value"]),
            )
    for index in history.indexes("ticket.reopened"):
        collector.add("reopen_rate", at(index), dims(index), counts={"reopened": 1})

    # H10: the touches before S1, counted at S1; every public agent reply at its time.
    if first_solve is not None:
        touches = sum(1 for i in replies if i < first_solve)
        collector.add(
            "work_per_interaction",
            at(first_solve),
            dims(first_solve),
            counts={"first_solves": 1, "touches": touches, "one_touch": int(touches == 1)},
        )
    for index in replies:
        handle = events[index].get("handle_seconds")
        collector.add(
            "work_per_interaction",
            at(index),
            dims(index),
            counts={"agent_replies": 1},
            samples={} if handle is None else {"handle": float(handle)},
        )

    # H13, H14: survey answers at their time, in their dimensions.
    for index in history.indexes("survey.csat"):
        score = int(events[index]["score"])
        counts = {"answers": 1, "satisfied": int(score >= 4)}
        collector.add("csat", at(index), dims(index), counts=counts)
    for index in history.indexes("survey.nps"):
        score = int(events[index]["score"])
        category = "promoters" if score >= 9 else "passives" if score >= 7 else "detractors"
        collector.add("nps", at(index), dims(index), counts={"answers": 1, category: 1})


def _collect_session(session: dict[str, Any], collector: _Collector) -> None:
    """H15: every self-service session at its time, with or without a ticket, in {}."""
    collector.add(
        "self_service",
        session["t"],
        [()],
        counts={"sessions": 1, "succeeded": int(session["succeeded"] is True)},
        samples={"screens": float(session["screens"]), "clicks": float(session["clicks"])},
    )


# --------------------------------------------------------------------------------------
# Formatting the values of a window message


def rank_value(sorted_values: list[float], percent: int) -> float | None:
    """The exact q-quantile the sketch approximates: sorted[floor(q (n - 1))], 0-based,
    in integer arithmetic so no float rounding moves the rank; None without values."""
    if not sorted_values:
        return None
    return sorted_values[percent * (len(sorted_values) - 1) // 100]


def _ratio(numerator: float, denominator: float) -> float | None:
    """A ratio that is null, not 0 or an error, when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def _latency_values(cell: _Cell) -> dict[str, Any]:
    samples = sorted(cell.samples["latency"])
    return {
        "count": len(samples),
        "sum_seconds": math.fsum(samples),
        "p50_seconds": rank_value(samples, 50),
        "p90_seconds": rank_value(samples, 90),
        "p99_seconds": rank_value(samples, 99),
        "_samples": samples,
    }


def _sla_values(cell: _Cell) -> dict[str, Any]:
    met, breached = cell.counts["met"], cell.counts["breached"]
    return {
        "met": met,
        "breached": breached,
        "total": met + breached,
        "attainment": _ratio(met, met + breached),
    }


def _resolved_values(cell: _Cell) -> dict[str, Any]:
    return {"solved": cell.counts["solved"], **{m: cell.counts[m] for m in SOLVE_METHODS}}


def _escalation_values(cell: _Cell) -> dict[str, Any]:
    counts = cell.counts
    return {
        "created": counts["created"],
        "escalated": counts["escalated"],
        "rate": _ratio(counts["escalated"], counts["created"]),
        "complaints_created": counts["complaints_created"],
        "complaints_escalated": counts["complaints_escalated"],
        "complaint_rate": _ratio(counts["complaints_escalated"], counts["complaints_created"]),
    }


def _reopen_values(cell: _Cell) -> dict[str, Any]:
    solved, reopened = cell.counts["solved"], cell.counts["reopened"]
    return {"solved": solved, "reopened": reopened, "rate": _ratio(reopened, solved)}


def _work_values(cell: _Cell) -> dict[str, Any]:
    counts = cell.counts
    handle = sorted(cell.samples["handle"])
    return {
        "first_solves": counts["first_solves"],
        "touches": counts["touches"],
        "touches_per_solved": _ratio(counts["touches"], counts["first_solves"]),
        "one_touch": counts["one_touch"],
        "one_touch_rate": _ratio(counts["one_touch"], counts["first_solves"]),
        "agent_replies": counts["agent_replies"],
        "handle_count": len(handle),
        "handle_p50_seconds": rank_value(handle, 50),
        "handle_p90_seconds": rank_value(handle, 90),
        "_handle_samples": handle,
    }


def _value_settled_values(cell: _Cell) -> dict[str, Any]:
    return {"amount": float(cell.amount), "solves": cell.counts["solves"]}


def _csat_values(cell: _Cell) -> dict[str, Any]:
    """Without `change`: that needs the previous window, added afterwards."""
    answers, satisfied = cell.counts["answers"], cell.counts["satisfied"]
    return {"answers": answers, "satisfied": satisfied, "csat": _ratio(satisfied, answers)}


def _nps_values(cell: _Cell) -> dict[str, Any]:
    counts = cell.counts
    answers = counts["answers"]
    return {
        "answers": answers,
        "promoters": counts["promoters"],
        "passives": counts["passives"],
        "detractors": counts["detractors"],
        "nps": _ratio(100 * (counts["promoters"] - counts["detractors"]), answers),
    }


def _self_service_values(cell: _Cell) -> dict[str, Any]:
    screens, clicks = sorted(cell.samples["screens"]), sorted(cell.samples["clicks"])
    sessions = cell.counts["sessions"]
    return {
        "sessions": sessions,
        "succeeded": cell.counts["succeeded"],
        "success_rate": _ratio(cell.counts["succeeded"], sessions),
        "screens_p50": rank_value(screens, 50),
        "screens_p90": rank_value(screens, 90),
        "clicks_p50": rank_value(clicks, 50),
        "clicks_p90": rank_value(clicks, 90),
        "_screens_samples": screens,
        "_clicks_samples": clicks,
    }


_FORMATTERS = {
    **dict.fromkeys(LATENCY_KPIS, _latency_values),
    "first_response_sla": _sla_values,
    "resolution_sla": _sla_values,
    "resolved_issues": _resolved_values,
    "escalation_rate": _escalation_values,
    "reopen_rate": _reopen_values,
    "work_per_interaction": _work_values,
    "value_settled": _value_settled_values,
    "csat": _csat_values,
    "nps": _nps_values,
    "self_service": _self_service_values,
}


def _add_csat_change(windows: dict[WindowKey, dict[str, Any]]) -> None:
    """H13 `change`: this window's csat minus that of the window of the same size just
    before it, same dimensions; None when either has no answers (no message)."""
    for (kpi, size_ms, start, dims), values in windows.items():
        if kpi != "csat":
            continue
        previous = windows.get((kpi, size_ms, start - size_ms, dims))
        before = previous["csat"] if previous is not None else None
        now = values["csat"]
        values["change"] = now - before if now is not None and before is not None else None


def _tickets_active(
    histories: list[TicketHistory], all_times: list[int], sizes_ms: tuple[int, ...]
) -> dict[WindowKey, dict[str, Any]]:
    """H1 per window: tickets active at the window's end, by status. A dimension set is
    emitted when one of its counts at the end differs from that at the start (a
    consumer keeps the last value). Only windows holding an event can differ: the
    state of a ticket changes at its events only."""
    windows: dict[WindowKey, dict[str, Any]] = {}
    for size_ms in sizes_ms:
        for start in sorted({window_start(t, size_ms) for t in all_times}):
            end = start + size_ms
            at_start: dict[Dims, Counter[str]] = defaultdict(Counter)
            at_end: dict[Dims, Counter[str]] = defaultdict(Counter)
            for history in histories:
                if history.created_at >= end:
                    continue  # does not exist at the start or the end
                if history.ends_inactive and start > history.last_event_at:
                    continue  # no longer active at the start or the end
                for counts, at in ((at_start, start), (at_end, end)):
                    membership = history.active_membership_at(at)
                    if membership is not None:
                        for dims in ticket_dims(membership):
                            counts[dims][membership.status] += 1
            for dims in set(at_start) | set(at_end):
                before, after = at_start[dims], at_end[dims]
                if all(before[s] == after[s] for s in ACTIVE_STATUSES):
                    continue
                values: dict[str, Any] = {status: after[status] for status in ACTIVE_STATUSES}
                values["active"] = sum(after[status] for status in ACTIVE_STATUSES)
                windows[("tickets_active", size_ms, start, dims)] = values
    return windows


def unique_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events with repeated event ids dropped (the first one seen is kept)."""
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            unique.append(event)
    return unique


def compute_windows(
    events: list[dict[str, Any]],
    sizes_ms: tuple[int, ...],
    *,
    first_response_target_ms: dict[str, int] | None = None,
    resolution_target_ms: dict[str, int] | None = None,
) -> dict[WindowKey, dict[str, Any]]:
    """Every window message the spec says is emitted, keyed (kpi, size_ms, start_ms, dims).

    `events`: the events' JSON fields plus `t` (occurred_at in epoch ms), in any order,
    duplicates included. The targets (ms per priority) override the defaults of
    docs/kpis.md priority by priority. The values are those of the spec's message for
    the KPI; keys starting with `_` hold the exact sorted samples behind percentiles.
    """
    first_targets = {**DEFAULT_FIRST_RESPONSE_TARGET_MS, **(first_response_target_ms or {})}
    resolution_targets = {**DEFAULT_RESOLUTION_TARGET_MS, **(resolution_target_ms or {})}
    unique = unique_events(events)

    by_ticket: dict[str, list[dict[str, Any]]] = defaultdict(list)
    sessions = []
    for event in unique:
        if event["type"] in TICKET_EVENT_TYPES:
            by_ticket[event["ticket_id"]].append(event)
        elif event["type"] == "selfservice.session":
            sessions.append(event)
    # A ticket whose ticket.created never comes has no dimensions: it counts nowhere.
    histories = [
        TicketHistory(ticket_events)
        for ticket_events in by_ticket.values()
        if any(event["type"] == "ticket.created" for event in ticket_events)
    ]

    collector = _Collector(sizes_ms)
    for history in histories:
        _collect_ticket(history, collector, first_targets, resolution_targets)
    for session in sessions:
        _collect_session(session, collector)

    windows = {key: _FORMATTERS[key[0]](cell) for key, cell in collector.cells.items()}
    _add_csat_change(windows)
    windows.update(_tickets_active(histories, [event["t"] for event in unique], sizes_ms))
    windows.update(_agent_productivity(unique, windows, sizes_ms))
    return dict(sorted(windows.items()))


def _agent_productivity(
    unique: list[dict[str, Any]],
    windows: dict[WindowKey, dict[str, Any]],
    sizes_ms: tuple[int, ...],
) -> dict[WindowKey, dict[str, Any]]:
    """H12 per window: the agents' time on shift in the window (each agent's on-intervals
    from its agent.shift events in time order, an off before an on of the same
    millisecond; an interval never closed lasts past the last event), the solves by
    agents (method agent) in it, and solves per agent-hour. Emitted, dimensions {}, when
    either is not zero; windows up to the one holding the last event."""
    by_agent: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event in unique:
        if event["type"] == "agent.shift":
            by_agent[event["agent_id"]].append((event["t"], event["state"]))
    intervals: list[tuple[int, float]] = []
    for shifts in by_agent.values():
        since: int | None = None
        for at, state in sorted(shifts):
            if state == "on" and since is None:
                since = at
            elif state == "off" and since is not None:
                intervals.append((since, at))
                since = None
        if since is not None:
            intervals.append((since, float("inf")))
    out: dict[WindowKey, dict[str, Any]] = {}
    if not unique:
        return out
    first, last = min(e["t"] for e in unique), max(e["t"] for e in unique)
    for size_ms in sizes_ms:
        for start in range(window_start(first, size_ms), last + 1, size_ms):
            end = start + size_ms
            on_ms = sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)
            resolved = windows.get(("resolved_issues", size_ms, start, ()))
            solved = resolved["agent"] if resolved else 0
            if not on_ms and not solved:
                continue
            hours = on_ms / 3_600_000
            out[("agent_productivity", size_ms, start, ())] = {
                "agent_hours": hours,
                "solved_by_agents": solved,
                "solved_per_agent_hour": solved / hours if hours else None,
            }
    return out


# --------------------------------------------------------------------------------------
# Comparing the KPI topic with the oracle


def parse_window_size(text: str) -> int:
    """'1m', '1h', '1d', '90s', '250ms' -> milliseconds."""
    match = _WINDOW_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"window size {text!r} is not like 1m, 1h, 1d, 90s or 250ms")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _message_dims(dimensions: dict[str, str]) -> Dims:
    """A message's dimensions in WindowKey order (queue, priority, currency; any
    unknown name after them, so it can never match an expected key by accident)."""
    known = [(name, dimensions[name]) for name in _DIMENSION_ORDER if name in dimensions]
    unknown = sorted((n, v) for n, v in dimensions.items() if n not in _DIMENSION_ORDER)
    return tuple(known + unknown)


def message_key(message: dict[str, Any]) -> WindowKey:
    """The WindowKey a kpi.windows.v1 message is about."""
    return (
        message["kpi"],
        parse_window_size(message["window"]),
        parse_rfc3339_ms(message["window_start"]),
        _message_dims(message.get("dimensions") or {}),
    )


def describe(key: WindowKey) -> str:
    """A key as people read it: 'first_response_time 1h 2026-11-24T09:00:00.000Z
    queue=billing,priority=urgent' (the topic's key spelling)."""
    kpi, size_ms, start, dims = key
    unit = next(u for u in ("d", "h", "m", "s", "ms") if size_ms % _UNIT_MS[u] == 0)
    size = f"{size_ms // _UNIT_MS[unit]}{unit}"
    dims_text = ",".join(f"{name}={value}" for name, value in dims) or "all"
    return f"{kpi} {size} {format_rfc3339_ms(start)} {dims_text}"


def is_percentile(name: str) -> bool:
    """p50_seconds, handle_p90_seconds, screens_p50...: sketch estimates, not exact."""
    return any(_PERCENTILE_WORD.fullmatch(word) for word in name.split("_"))


def _value_matches(name: str, got: Any, want: Any, relative_accuracy: float) -> bool:
    """One value: counts exactly (and as JSON integers), percentiles within the sketch's
    relative accuracy of the exact rank value, other numbers within 1e-9."""
    if want is None:
        return got is None
    if got is None or isinstance(got, bool) or not isinstance(got, int | float):
        return False
    if is_percentile(name):
        return bool(abs(got - want) <= relative_accuracy * abs(want) + 1e-9)
    if isinstance(want, int):
        return isinstance(got, int) and got == want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def _value_problems(
    label: str, got: dict[str, Any], want: dict[str, Any], relative_accuracy: float
) -> list[str]:
    problems = []
    for name, expected in want.items():
        if name.startswith("_"):
            continue  # the oracle's own samples, not a message value
        if name not in got:
            problems.append(f"{label}: value {name!r} missing (oracle {expected!r})")
        elif not _value_matches(name, got[name], expected, relative_accuracy):
            problems.append(f"{label}: {name} is {got[name]!r} in the message, oracle {expected!r}")
    return problems


def public_values(values: dict[str, Any]) -> dict[str, Any]:
    """The values without the oracle's `_` sample lists: what a message carries."""
    return {name: value for name, value in values.items() if not name.startswith("_")}


def assert_windows_match(
    messages: list[dict[str, Any]],
    expected: dict[WindowKey, dict[str, Any]],
    *,
    final_through_ms: int,
    relative_accuracy: float = 0.01,
) -> None:
    """The final kpi.windows.v1 messages say what the oracle computed.

    Only `is_final` messages are compared (earlier revisions may lack late events).
    Every final message must have an expected key and matching values (each one, if a
    final is repeated), and every expected window ending at or before
    `final_through_ms` must have a final message. The error lists the problems, the
    first (earliest key) first, under a summary of what was compared.
    """
    finals = [message for message in messages if message.get("is_final") is True]
    problems: list[tuple[WindowKey, str]] = []
    seen: set[WindowKey] = set()
    compared = 0
    for message in finals:
        key = message_key(message)
        label = describe(key)
        if key not in expected:
            problems.append(
                (
                    key,
                    f"{label}: final message the oracle does not expect, "
                    f"values {message.get('values')!r}",
                )
            )
            continue
        seen.add(key)
        compared += 1
        end = parse_rfc3339_ms(message["window_end"])
        if end != key[2] + key[1]:
            problems.append(
                (key, f"{label}: window_end is {message['window_end']}, not start + size")
            )
        for problem in _value_problems(
            label, message.get("values") or {}, expected[key], relative_accuracy
        ):
            problems.append((key, problem))
    due = [key for key in expected if key[2] + key[1] <= final_through_ms]
    for key in due:
        if key not in seen:
            values = public_values(expected[key])
            problems.append((key, f"{describe(key)}: no final message (oracle {values!r})"))
    if problems:
        problems.sort(key=lambda item: item[0])
        shown = "\n".join(f"  {text}" for _, text in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise AssertionError(
            f"kpi.windows.v1 differs from the oracle: {len(problems)} problem(s); "
            f"{len(finals)} final messages, {compared} windows compared, "
            f"{len(due)} expected windows final by {final_through_ms}\n{shown}{more}"
        )
