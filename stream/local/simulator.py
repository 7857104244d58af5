"""A seeded, deterministic generator of realistic help-desk and order traffic.

`simulate(SimConfig(...))` yields `SimMessage`s in the order they should be sent
(non-decreasing `emit_at_ms`): the exact Kafka key and value bytes, the logical topic
("helpdesk" or "orders") and whether the message is a valid event, a re-sent duplicate
or a deliberately broken message. Nothing here touches the network, the wall clock or
the global random generator: one seed gives one byte stream.

The model, in event time (every delay inside a ticket's or an order's life is
multiplied by `time_scale`; arrivals, agent shifts and the day curve are not):

* Tickets arrive as a non-homogeneous Poisson process (thinning) whose rate follows
  a day curve in UTC (night trough, late-morning peak; mean 1.0 over the day). Each
  ticket lives as a generator that yields its events in time order: created, often an
  automated acknowledgement (author=system, public=false), sometimes an internal note,
  sometimes a customer reply first, the first public agent reply after a lognormal
  delay whose median and spread depend on the priority (about 9 % breach the SLA
  target; 2 % of tickets are abandoned and auto-solved a week later), status changes
  open/pending/on_hold, queue moves, priority changes, escalations, the solve (agent,
  phone, automation, self-service answer bot), reopen and second solve, surveys and
  the close days later.
* Self-service sessions without a ticket arrive on their own (some fail and turn into
  a ticket); agents go on and off shift hourly so that staffing follows the day curve.
* Orders arrive like tickets: placed -> confirmed (clicks, latency) -> confirmation
  notice -> shipped with a promise -> shipment notice (mostly within 15 min) ->
  sometimes delayed (told proactively or only after the customer contacted support,
  which may open a ticket) -> delivered on time or late; some are cancelled. Customers
  are drawn from a skewed pool (so they come back) and customers who contacted support
  recently are more likely to order.

Duplicates, late events and malformed messages are injected by the engine around the
valid events, in shares set by the config.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from operator import itemgetter
from typing import Any, Literal

import orjson

__all__ = ["SimConfig", "SimMessage", "day_curve", "simulate"]

SEC = 1_000.0
MIN = 60_000.0
HOUR = 3_600_000.0
DAY = 86_400_000.0

PRIORITIES = ("urgent", "high", "normal", "low")
PRIORITY_WEIGHTS = (0.05, 0.20, 0.60, 0.15)
# Default first-response SLA targets; the medians sit well below them and the spread
# is chosen so that about 9 % of lognormal delays pass the target (z = 1.34).
SLA_TARGET_MS = {"urgent": 1 * HOUR, "high": 4 * HOUR, "normal": 24 * HOUR, "low": 48 * HOUR}
FIRST_RESPONSE_MEDIAN_MS = {
    "urgent": 20 * MIN,
    "high": 1.5 * HOUR,
    "normal": 6 * HOUR,
    "low": 12 * HOUR,
}
_BREACH_Z = 1.34
FIRST_RESPONSE_SIGMA = {
    p: math.log(SLA_TARGET_MS[p] / FIRST_RESPONSE_MEDIAN_MS[p]) / _BREACH_Z for p in PRIORITIES
}

CHANNELS = ("email", "web", "phone", "chat", "social", "self_service", "other")
CHANNEL_WEIGHTS = (0.35, 0.20, 0.15, 0.15, 0.05, 0.07, 0.03)
SUBJECT_KINDS = ("complaint", "question", "incident", "request")
SUBJECT_WEIGHTS = (0.15, 0.45, 0.20, 0.20)
_QUEUE_WEIGHT = {"billing": 0.25, "technical": 0.30, "shipping": 0.20, "returns": 0.10}
_OTHER_QUEUE_WEIGHT = 0.15
ORDER_CHANNELS = ("web", "app", "phone", "store")
ORDER_CHANNEL_WEIGHTS = (0.50, 0.30, 0.12, 0.08)
CURRENCIES = ("EUR", "DKK", "USD")
CURRENCY_WEIGHTS = (0.60, 0.25, 0.15)
_CURRENCY_FACTOR = {"EUR": 1.0, "DKK": 7.46, "USD": 1.08}
CSAT_WEIGHTS = (0.06, 0.06, 0.10, 0.28, 0.50)  # scores 1..5
NPS_WEIGHTS = (0.03, 0.02, 0.02, 0.03, 0.04, 0.06, 0.08, 0.14, 0.18, 0.20, 0.20)  # 0..10
ESCALATION_REASONS = ("complaint", "sla_risk", "technical", "vip")
CANCEL_REASONS = ("customer_request", "out_of_stock", "payment_failed")

# Mean messages per arrival in steady state (all lifecycles complete), measured from this
# model with scripts in the test suite (tests/unit/test_simulator.py checks they hold):
# per ticket arrival, including the self-service sessions, the tickets they open and the
# agent shifts that come with the ticket rate; per order arrival, including notices and
# the tickets opened by customers asking about a delayed order.
EVENTS_PER_TICKET = 13.9
EVENTS_PER_ORDER = 7.0
DEFAULT_ORDERS_PER_TICKET = 2.0

Topic = Literal["helpdesk", "orders"]
Kind = Literal["event", "duplicate", "malformed"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate. All times are epoch milliseconds in event time (UTC)."""

    seed: int = 42
    start_ms: int = 0
    duration_ms: int | None = None
    tickets_per_hour: float = 600.0
    orders_per_hour: float = 1200.0
    time_scale: float = 1.0
    daily_cycle: bool = True
    duplicate_share: float = 0.0
    malformed_share: float = 0.0
    late_share: float = 0.0
    queues: tuple[str, ...] = ("billing", "technical", "shipping", "returns", "general")

    @classmethod
    def for_rate(cls, events_per_second: float, **kw: Any) -> SimConfig:
        """A config whose messages come at about `events_per_second` on the daily mean.

        Counts every message (valid events, duplicates and malformed ones) once all
        lifecycles run in steady state: with a small `time_scale` that is after a few
        scaled days, with `time_scale=1` the first days ramp up as tickets age. Orders
        keep two per ticket unless both rates are given (then their ratio is kept).
        """
        if events_per_second < 0:
            raise ValueError("events_per_second must be >= 0")
        tickets = kw.pop("tickets_per_hour", None)
        orders = kw.pop("orders_per_hour", None)
        ratio = DEFAULT_ORDERS_PER_TICKET
        if tickets is not None and orders is not None and tickets > 0:
            ratio = float(orders) / float(tickets)
        extra = 1.0 + float(kw.get("duplicate_share", 0.0)) + float(kw.get("malformed_share", 0.0))
        per_ticket_unit = (EVENTS_PER_TICKET + ratio * EVENTS_PER_ORDER) * extra
        tickets_per_hour = events_per_second * 3600.0 / per_ticket_unit
        return cls(
            tickets_per_hour=tickets_per_hour, orders_per_hour=ratio * tickets_per_hour, **kw
        )


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message to produce: the exact bytes, when to send them and what they are."""

    topic: Topic
    key: bytes | None
    value: bytes
    emit_at_ms: int
    occurred_at_ms: int
    kind: Kind


# --- the day curve -------------------------------------------------------------------


def _raw_curve(hour: float) -> float:
    return (
        1.0
        + 0.62 * math.cos(2 * math.pi * (hour - 13.0) / 24.0)
        + 0.22 * math.cos(4 * math.pi * (hour - 10.5) / 24.0)
    )


def _minute_table() -> tuple[float, ...]:
    raw = [max(0.05, _raw_curve(m / 60.0)) for m in range(1440)]
    mean = sum(raw) / len(raw)
    return tuple(v / mean for v in raw)


_DAY_TABLE = _minute_table()
_DAY_MAX = max(_DAY_TABLE)


def day_curve(t_ms: float) -> float:
    """Relative arrival intensity at a UTC moment; its mean over a day is 1.0."""
    return _DAY_TABLE[int(t_ms // MIN) % 1440]


# --- timestamps ----------------------------------------------------------------------

_prefix_cache: dict[int, str] = {}


def _fmt(t_ms: int) -> str:
    """Epoch ms -> '2026-11-24T10:15:30.123Z' (cached per minute; the hot path)."""
    minute, rest = divmod(t_ms, 60_000)
    prefix = _prefix_cache.get(minute)
    if prefix is None:
        if len(_prefix_cache) > 20_000:
            _prefix_cache.clear()
        prefix = datetime.fromtimestamp(minute * 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:")
        _prefix_cache[minute] = prefix
    sec, ms = divmod(rest, 1000)
    return f"{prefix}{sec:02d}.{ms:03d}Z"


# --- the engine ----------------------------------------------------------------------

# A process yields items (t_ms, topic, key, type, fields) for events, or
# (t_ms, _SPAWN, None, child_process, None) to start another process at t_ms.
Item = tuple[float, Any, Any, Any, Any]
Process = Generator[Item, None, None]

_SPAWN = object()
_PROC = 0
_MSG = 1
_MALFORMED_KINDS = 8


class _Engine:
    def __init__(self, config: SimConfig) -> None:
        if config.time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        if not config.queues:
            raise ValueError("queues must not be empty")
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.seed = config.seed
        self.scale = config.time_scale
        self.end: float | None = (
            None if config.duration_ms is None else config.start_ms + config.duration_ms
        )
        self.heap: list[tuple[float, int, int, Any, Any]] = []
        self.seq = 0
        self.n_event = {"helpdesk": 0, "orders": 0}
        self.n_ticket = 0
        self.n_order = 0
        self.n_bad = 0
        self.bad_cursor = self.rng.randrange(_MALFORMED_KINDS)
        self.n_customers = max(500, int((config.tickets_per_hour + config.orders_per_hour) * 24))
        self.recent_contacts: deque[str] = deque(maxlen=2000)
        self.n_agents = max(4, math.ceil(config.tickets_per_hour / 6.0))
        self.agents = [f"A-{i:04d}" for i in range(self.n_agents)]
        self.on_duty: list[str] = []
        queues = config.queues
        self.queues = queues
        self.queue_cum = list(accumulate(_QUEUE_WEIGHT.get(q, _OTHER_QUEUE_WEIGHT) for q in queues))
        self.prio_cum = list(accumulate(PRIORITY_WEIGHTS))
        self.chan_cum = list(accumulate(CHANNEL_WEIGHTS))
        self.subj_cum = list(accumulate(SUBJECT_WEIGHTS))
        self.ochan_cum = list(accumulate(ORDER_CHANNEL_WEIGHTS))
        self.cur_cum = list(accumulate(CURRENCY_WEIGHTS))
        self.csat_cum = list(accumulate(CSAT_WEIGHTS))
        self.nps_cum = list(accumulate(NPS_WEIGHTS))

    # -- helpers --

    def _pick(self, values: tuple[str, ...], cum: list[float]) -> str:
        return self.rng.choices(values, cum_weights=cum)[0]

    def _lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(self.rng.gauss(0.0, sigma))

    def _customer(self) -> str:
        # Skewed: low indexes are regulars who come back often.
        return f"C-{int(self.n_customers * self.rng.random() ** 2):06d}"

    def _agent(self) -> str:
        pool = self.on_duty or self.agents
        return pool[self.rng.randrange(len(pool))]

    def _new_ticket_id(self) -> str:
        self.n_ticket += 1
        return f"T-{self.seed}-{self.n_ticket:07d}"

    def _handle_seconds(self) -> int:
        return max(15, int(self._lognormal(240.0, 0.7)))

    def _money(self, median_eur: float) -> dict[str, str]:
        currency = self._pick(CURRENCIES, self.cur_cum)
        value = self._lognormal(median_eur, 0.8) * _CURRENCY_FACTOR[currency]
        if value >= 20:
            value = round(value)  # refunds and prices often are whole units
        return {"value": f"{value:.2f}", "currency": currency}

    def _arrivals(self, per_hour: float) -> Iterator[float]:
        """Arrival times (ms) of a Poisson process modulated by the day curve (thinning)."""
        rng = self.rng
        daily = self.cfg.daily_cycle
        peak = _DAY_MAX if daily else 1.0
        rate = per_hour * peak / HOUR  # per ms, at the peak
        t = float(self.cfg.start_ms)
        while True:
            t += rng.expovariate(rate)
            if not daily or rng.random() * peak < day_curve(t):
                yield t

    # -- processes: ticket arrivals, self-service, shifts, orders --

    def ticket_arrivals(self) -> Process:
        for t in self._arrivals(self.cfg.tickets_per_hour):
            yield (t, _SPAWN, None, self.ticket_life(t, self._new_ticket_id()), None)

    def session_arrivals(self) -> Process:
        rng = self.rng
        for t in self._arrivals(self.cfg.tickets_per_hour * 0.4):
            customer = self._customer()
            succeeded = rng.random() < 0.6
            screens = 1 + int(self._lognormal(2.5 if succeeded else 4.5, 0.6))
            clicks = screens + int(screens * rng.random() * 2.0)
            yield (
                t,
                "helpdesk",
                customer.encode(),
                "selfservice.session",
                {
                    "customer_id": customer,
                    "screens": screens,
                    "clicks": clicks,
                    "succeeded": succeeded,
                },
            )
            if not succeeded and rng.random() < 0.35:
                at = t + rng.uniform(1 * MIN, 15 * MIN) * self.scale
                channel = "self_service" if rng.random() < 0.6 else "web"
                life = self.ticket_life(at, self._new_ticket_id(), customer, channel=channel)
                yield (at, _SPAWN, None, life, None)

    def shifts(self) -> Process:
        """Agents on and off: hourly, staffing follows the day curve; shifts last <= 8 h."""
        rng = self.rng
        daily = self.cfg.daily_cycle
        since: dict[str, float] = {}
        t = float(self.cfg.start_ms)
        first = True
        while True:
            level = day_curve(t) / _DAY_MAX if daily else 0.6
            target = max(2, round(self.n_agents * 0.85 * level))
            changes: list[tuple[float, str, str]] = []
            on = self.on_duty
            for agent in [a for a in on if t - since[a] >= 8 * HOUR]:
                on.remove(agent)
                del since[agent]
                changes.append((t + rng.uniform(0, 10 * MIN), agent, "off"))
            off = [a for a in self.agents if a not in since]
            rng.shuffle(off)
            while len(on) < target and off:
                agent = off.pop()
                on.append(agent)
                since[agent] = t
                offset = 0.0 if first else rng.uniform(0, 10 * MIN)
                changes.append((t + offset, agent, "on"))
            while len(on) > target:
                agent = min(on, key=since.__getitem__)
                on.remove(agent)
                del since[agent]
                changes.append((t + rng.uniform(0, 10 * MIN), agent, "off"))
            changes.sort(key=itemgetter(0))
            for at, agent, state in changes:
                yield (
                    at,
                    "helpdesk",
                    agent.encode(),
                    "agent.shift",
                    {"agent_id": agent, "state": state},
                )
            first = False
            t = (t // HOUR + 1) * HOUR

    def order_arrivals(self) -> Process:
        for t in self._arrivals(self.cfg.orders_per_hour):
            yield (t, _SPAWN, None, self.order_life(t), None)

    # -- a ticket's life --

    def ticket_life(
        self,
        t0: float,
        ticket_id: str,
        customer: str | None = None,
        *,
        channel: str | None = None,
        queue: str | None = None,
        subject: str | None = None,
    ) -> Process:
        rng = self.rng
        s = self.scale
        customer = customer or self._customer()
        self.recent_contacts.append(customer)
        key = ticket_id.encode()
        priority = self._pick(PRIORITIES, self.prio_cum)
        channel = channel or self._pick(CHANNELS, self.chan_cum)
        queue = queue or self._pick(self.queues, self.queue_cum)
        if subject is None and rng.random() < 0.85:
            subject = self._pick(SUBJECT_KINDS, self.subj_cum)
        complaint = subject == "complaint"
        agent = self._agent()
        base = {"ticket_id": ticket_id, "customer_id": customer}

        plan: list[tuple[float, str, dict[str, Any]]] = []
        add = plan.append

        def status(at: float, value: str) -> None:
            add((at, "ticket.status_changed", {**base, "status": value}))

        def agent_reply(at: float, public: bool = True) -> None:
            add(
                (
                    at,
                    "ticket.replied",
                    {
                        **base,
                        "author": "agent",
                        "public": public,
                        "agent_id": agent,
                        "handle_seconds": self._handle_seconds(),
                    },
                )
            )

        def customer_reply(at: float) -> None:
            add((at, "ticket.replied", {**base, "author": "customer", "public": True}))

        created = {**base, "queue": queue, "priority": priority, "channel": channel}
        if subject is not None:
            created["subject_kind"] = subject
        add((t0, "ticket.created", created))
        ack_at = t0
        if channel in ("email", "web", "self_service", "social", "other") or rng.random() < 0.2:
            ack_at = t0 + rng.uniform(2 * SEC, 90 * SEC) * s
            add((ack_at, "ticket.replied", {**base, "author": "system", "public": False}))

        solve_at: float
        method = "agent"
        touches = 0
        roll = rng.random()
        if channel == "phone" and roll < 0.6:
            # Solved during the call.
            first_at = t0 + rng.uniform(1 * MIN, 8 * MIN) * s
            agent_reply(first_at)
            solve_at = first_at + rng.uniform(1 * MIN, 15 * MIN) * s
            method = "phone"
        elif channel in ("web", "email", "self_service") and roll < 0.15:
            # The answer bot offers articles; a third of the time that settles it.
            at = t0 + rng.uniform(30 * SEC, 10 * MIN) * s
            ok = rng.random() < 0.35
            screens = 1 + int(self._lognormal(2.0, 0.5))
            add(
                (
                    at,
                    "selfservice.session",
                    {
                        **base,
                        "screens": screens,
                        "clicks": screens + rng.randrange(0, 4),
                        "succeeded": ok,
                    },
                )
            )
            if ok:
                solve_at = at + rng.uniform(1 * MIN, 20 * MIN) * s
                method = "self_service"
            else:
                solve_at, touches = self._conversation(
                    t0,
                    ack_at,
                    priority,
                    complaint,
                    queue,
                    agent,
                    base,
                    plan,
                    status,
                    agent_reply,
                    customer_reply,
                )
        elif roll > 0.98:
            # Abandoned: nobody answers; automation solves it after a week.
            solve_at = t0 + rng.uniform(6 * DAY, 8 * DAY) * s
            method = "automation"
        else:
            solve_at, touches = self._conversation(
                t0,
                ack_at,
                priority,
                complaint,
                queue,
                agent,
                base,
                plan,
                status,
                agent_reply,
                customer_reply,
            )
            if method == "agent":
                r = rng.random()
                if r < 0.05:
                    method = "automation"
                elif r < 0.11:
                    method = "phone"

        # Escalation, queue move and priority change happen somewhere before the solve.
        span = max(solve_at - t0, 1.0)
        if rng.random() < (0.25 if complaint else 0.07):
            add(
                (
                    t0 + span * rng.uniform(0.05, 0.9),
                    "ticket.escalated",
                    {
                        **base,
                        "level": 1 if rng.random() < 0.75 else 2,
                        "reason": "complaint" if complaint else rng.choice(ESCALATION_REASONS),
                    },
                )
            )
        if len(self.queues) > 1 and rng.random() < 0.12:
            other = [q for q in self.queues if q != queue]
            add(
                (
                    t0 + span * rng.uniform(0.02, 0.6),
                    "ticket.assigned",
                    {**base, "queue": rng.choice(other), "agent_id": self._agent()},
                )
            )
        if rng.random() < 0.06:
            add(
                (
                    t0 + span * rng.uniform(0.02, 0.5),
                    "ticket.priority_changed",
                    {**base, "priority": rng.choice([p for p in PRIORITIES if p != priority])},
                )
            )

        def solved(at: float, how: str) -> None:
            fields: dict[str, Any] = {**base, "method": how}
            money_share = 0.25 if queue in ("billing", "returns") else 0.06
            if complaint:
                money_share += 0.15
            if how in ("agent", "phone") and rng.random() < money_share:
                fields["settled_amount"] = self._money(30.0)
            add((at, "ticket.solved", fields))

        solved(solve_at, method)
        plan.sort(key=itemgetter(0))
        for at, typ, fields in plan:
            yield (at, "helpdesk", key, typ, fields)

        # After the solve: reopen, surveys, close.
        plan.clear()
        final = solve_at
        if touches and rng.random() < 0.07:
            reopen_at = solve_at + self._lognormal(1 * DAY, 0.8) * s
            add((reopen_at, "ticket.reopened", dict(base)))
            customer_reply(reopen_at + rng.uniform(0.1 * SEC, 2 * SEC) * s)
            reply_at = reopen_at + self._lognormal(3 * HOUR, 0.9) * s
            agent_reply(reply_at)
            final = reply_at + rng.uniform(10 * MIN, 3 * HOUR) * s
            solved(final, "agent")
        if rng.random() < 0.30:
            score = rng.choices(range(1, 6), cum_weights=self.csat_cum)[0]
            if complaint and score > 1 and rng.random() < 0.4:
                score -= 1
            add(
                (
                    final + self._lognormal(2 * HOUR, 1.0) * s,
                    "survey.csat",
                    {**base, "score": score},
                )
            )
        if rng.random() < 0.15:
            score = rng.choices(range(11), cum_weights=self.nps_cum)[0]
            add((final + self._lognormal(1 * DAY, 0.7) * s, "survey.nps", {**base, "score": score}))
        if rng.random() < 0.97:
            add((final + rng.uniform(3 * DAY, 5 * DAY) * s, "ticket.closed", dict(base)))
        plan.sort(key=itemgetter(0))
        for at, typ, fields in plan:
            yield (at, "helpdesk", key, typ, fields)

    def _conversation(
        self,
        t0: float,
        ack_at: float,
        priority: str,
        complaint: bool,
        queue: str,
        agent: str,
        base: dict[str, str],
        plan: list[tuple[float, str, dict[str, Any]]],
        status: Any,
        agent_reply: Any,
        customer_reply: Any,
    ) -> tuple[float, int]:
        """Plan first response and the back-and-forth; return (solve time, agent touches)."""
        rng = self.rng
        s = self.scale
        add = plan.append
        delay = self._lognormal(FIRST_RESPONSE_MEDIAN_MS[priority], FIRST_RESPONSE_SIGMA[priority])
        first_at = max(t0 + delay * s, ack_at + 5 * SEC * s)
        wait = first_at - t0
        if rng.random() < 0.65:
            at = t0 + wait * rng.uniform(0.02, 0.4)
            add((at, "ticket.assigned", {**base, "queue": queue, "agent_id": agent}))
            status(at + 1, "open")
        else:
            status(t0 + wait * rng.uniform(0.01, 0.3), "open")
        if rng.random() < 0.20:
            agent_reply(t0 + wait * rng.uniform(0.3, 0.95), public=False)
        if rng.random() < 0.15:
            customer_reply(t0 + wait * rng.uniform(0.1, 0.9))
        agent_reply(first_at)
        touches = 1
        cur = first_at
        pending = rng.random() < 0.6
        if pending:
            status(cur + rng.uniform(1 * SEC, 30 * SEC) * s, "pending")
        r = rng.random()
        extra = 0 if r < 0.45 else 1 if r < 0.75 else 2 if r < 0.90 else 3 + int(rng.random() * 3)
        if complaint and extra < 3:
            extra += 1
        if rng.random() < 0.06:
            hold_at = cur + rng.uniform(10 * MIN, 2 * HOUR) * s
            status(hold_at, "on_hold")
            cur = hold_at + self._lognormal(1 * DAY, 0.7) * s
            status(cur, "open")
            pending = False
        for _ in range(extra):
            cur += self._lognormal(4 * HOUR, 1.0) * s
            customer_reply(cur)
            if pending:
                status(cur + rng.uniform(0.2 * SEC, 3 * SEC) * s, "open")
            cur += self._lognormal(2 * HOUR, 1.0) * s
            agent_reply(cur)
            touches += 1
            pending = rng.random() < 0.6
            if pending:
                status(cur + rng.uniform(1 * SEC, 30 * SEC) * s, "pending")
        if pending:
            solve_at = cur + self._lognormal(1 * HOUR, 1.0) * s
        else:
            solve_at = cur + rng.uniform(1 * MIN, 45 * MIN) * s
        return solve_at, touches

    # -- an order's life --

    def order_life(self, t0: float) -> Process:
        rng = self.rng
        s = self.scale
        self.n_order += 1
        order_id = f"O-{self.seed}-{self.n_order:07d}"
        key = order_id.encode()
        recent = self.recent_contacts
        if recent and rng.random() < 0.3:
            customer = recent[rng.randrange(len(recent))]
        else:
            customer = self._customer()
        base = {"order_id": order_id, "customer_id": customer}
        channel = self._pick(ORDER_CHANNELS, self.ochan_cum)
        yield (
            t0,
            "orders",
            key,
            "order.placed",
            {**base, "channel": channel, "amount": self._money(45.0)},
        )
        if rng.random() < 0.02:
            # Never confirmed: the payment fails and the order is cancelled.
            at = t0 + rng.uniform(5 * MIN, 2 * HOUR) * s
            yield (at, "orders", key, "order.cancelled", {**base, "reason": "payment_failed"})
            return
        if channel == "store":
            clicks = 0
            latency = rng.uniform(0.2 * SEC, 3 * SEC)
        elif channel == "phone":
            clicks = 0
            latency = self._lognormal(20 * SEC, 0.6)
        else:
            r = rng.random()
            clicks = 0 if r < 0.08 else 1 if r < 0.83 else rng.randint(2, 4)
            latency = self._lognormal(8 * SEC * (1 + 0.5 * max(clicks - 1, 0)), 1.3)
        confirmed_at = t0 + latency * s
        yield (confirmed_at, "orders", key, "order.confirmed", {**base, "clicks": clicks})
        if rng.random() < 0.9:
            at = confirmed_at + rng.uniform(1 * SEC, 30 * SEC) * s
            medium = "email" if rng.random() < 0.8 else "sms"
            yield (
                at,
                "orders",
                key,
                "notification.sent",
                {**base, "kind": "confirmation", "medium": medium},
            )
        if rng.random() < 0.04:
            at = confirmed_at + self._lognormal(2 * HOUR, 1.0) * s
            reason = "customer_request" if rng.random() < 0.7 else "out_of_stock"
            yield (at, "orders", key, "order.cancelled", {**base, "reason": reason})
            return

        plan: list[tuple[float, Any, Any, Any, Any]] = []
        add = plan.append
        shipped_at = confirmed_at + self._lognormal(18 * HOUR, 0.6) * s
        promised = shipped_at + rng.choice((2, 3, 3, 4)) * DAY * s
        add(
            (
                shipped_at,
                "orders",
                key,
                "order.shipped",
                {**base, "promised_by": _fmt(int(promised))},
            )
        )
        r = rng.random()
        if r < 0.85:
            notice_at: float | None = shipped_at + rng.uniform(0.5 * MIN, 12 * MIN) * s
        elif r < 0.93:
            notice_at = shipped_at + rng.uniform(20 * MIN, 3 * HOUR) * s
        else:
            notice_at = None
        if notice_at is not None:
            medium = ("email", "sms", "push")[
                rng.choices((0, 1, 2), cum_weights=(0.6, 0.8, 1.0))[0]
            ]
            add(
                (
                    notice_at,
                    "orders",
                    key,
                    "notification.sent",
                    {**base, "kind": "shipped", "medium": medium},
                )
            )

        if rng.random() < 0.10:
            delayed_at = shipped_at + (promised - shipped_at) * rng.uniform(0.2, 0.9)
            new_promised = promised + rng.uniform(1 * DAY, 3 * DAY) * s
            add(
                (
                    delayed_at,
                    "orders",
                    key,
                    "order.delayed",
                    {**base, "new_promised_by": _fmt(int(new_promised))},
                )
            )
            r = rng.random()
            contact_at: float | None = None
            if r < 0.55:
                told_at: float | None = delayed_at + rng.uniform(1 * MIN, 30 * MIN) * s
                if rng.random() < 0.25:
                    contact_at = told_at + rng.uniform(1 * HOUR, 12 * HOUR) * s
            elif r < 0.85:
                contact_at = delayed_at + rng.uniform(1 * HOUR, 12 * HOUR) * s
                told_at = contact_at + rng.uniform(10 * MIN, 6 * HOUR) * s
            else:
                told_at = None
                if rng.random() < 0.7:
                    contact_at = delayed_at + rng.uniform(2 * HOUR, 24 * HOUR) * s
            if told_at is not None:
                add(
                    (
                        told_at,
                        "orders",
                        key,
                        "notification.sent",
                        {**base, "kind": "delayed", "medium": "email"},
                    )
                )
            if contact_at is not None:
                self._contact(plan, contact_at, key, base, customer, complaint_share=0.4)
            if rng.random() < 0.7:
                delivered_at = new_promised - rng.uniform(0, 1 * DAY) * s
            else:
                delivered_at = new_promised + rng.uniform(2 * HOUR, 2 * DAY) * s
            delivered_at = max(delivered_at, delayed_at + 1 * HOUR * s)
        else:
            if rng.random() < 0.03:
                contact_at = shipped_at + rng.uniform(0.5 * DAY, 2 * DAY) * s
                self._contact(plan, contact_at, key, base, customer, complaint_share=0.1)
            if rng.random() < 0.9:
                delivered_at = shipped_at + (promised - shipped_at) * rng.uniform(0.35, 0.99)
            else:
                delivered_at = promised + rng.uniform(2 * HOUR, 2 * DAY) * s
        add((delivered_at, "orders", key, "order.delivered", dict(base)))
        plan.sort(key=itemgetter(0))
        yield from plan

    def _contact(
        self,
        plan: list[tuple[float, Any, Any, Any, Any]],
        at: float,
        key: bytes,
        base: dict[str, str],
        customer: str,
        complaint_share: float,
    ) -> None:
        """The customer asks support about the order; most such contacts open a ticket."""
        rng = self.rng
        fields: dict[str, Any] = dict(base)
        if rng.random() < 0.6:
            ticket_id = self._new_ticket_id()
            fields["ticket_id"] = ticket_id
            channel = ("email", "phone", "chat", "web")[rng.randrange(4)]
            subject = "complaint" if rng.random() < complaint_share else "question"
            queue = "shipping" if "shipping" in self.queues else None
            life = self.ticket_life(
                at + 1, ticket_id, customer, channel=channel, queue=queue, subject=subject
            )
            plan.append((at, "orders", key, "customer.contacted", fields))
            plan.append((at, _SPAWN, None, life, None))
        else:
            plan.append((at, "orders", key, "customer.contacted", fields))

    # -- the main loop --

    def run(self) -> Iterator[SimMessage]:
        cfg = self.cfg
        start = float(cfg.start_ms)
        self._start(self.shifts(), start)
        if cfg.tickets_per_hour > 0:
            self._start(self.ticket_arrivals(), start)
            self._start(self.session_arrivals(), start)
        if cfg.orders_per_hour > 0:
            self._start(self.order_arrivals(), start)
        return self._loop()

    def _start(self, proc: Process, now: float) -> None:
        self._advance(proc, now)

    def _advance(self, proc: Process, now: float) -> None:
        try:
            item = next(proc)
        except StopIteration:
            return
        t = item[0]
        if t < now:
            t = now
        if self.end is not None and t >= self.end:
            proc.close()
            return
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, _PROC, proc, item))

    def _push_msg(self, msg: SimMessage) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (msg.emit_at_ms, self.seq, _MSG, msg, None))

    def _loop(self) -> Iterator[SimMessage]:
        heap = self.heap
        pop = heapq.heappop
        rng = self.rng
        cfg = self.cfg
        scale = self.scale
        seed = self.seed
        dup_share = cfg.duplicate_share
        bad_share = cfg.malformed_share
        late_share = cfg.late_share
        n_event = self.n_event
        dumps = orjson.dumps
        fmt = _fmt
        while heap:
            t, _, code, proc, item = pop(heap)
            if code == _MSG:
                yield proc
                continue
            topic = item[1]
            if topic is _SPAWN:
                self._start(item[3], t)
                self._advance(proc, t)
                continue
            now = int(t)
            n = n_event[topic] + 1
            n_event[topic] = n
            body: dict[str, Any] = {
                "event_id": f"{'h' if topic == 'helpdesk' else 'o'}-{seed}-{n:09d}",
                "type": item[3],
                "occurred_at": fmt(now),
            }
            if n % 10 != 7:
                body["schema_version"] = 1
            body.update(item[4])
            msg = SimMessage(topic, item[2], dumps(body), now, now, "event")
            late = late_share > 0 and rng.random() < late_share
            if late:
                emit = now + int(rng.uniform(1 * SEC, 5 * MIN) * scale) + 1
                msg = SimMessage(topic, item[2], msg.value, emit, now, "event")
                self._push_msg(msg)
            else:
                yield msg
            if dup_share > 0 and rng.random() < dup_share:
                again = msg.emit_at_ms + int(rng.uniform(0, 60 * SEC) * scale)
                self._push_msg(SimMessage(topic, msg.key, msg.value, again, now, "duplicate"))
            if bad_share > 0 and rng.random() < bad_share:
                bad = self._malformed(msg, body)
                if late:
                    self._push_msg(bad)
                else:
                    yield bad
            self._advance(proc, t)

    def _malformed(self, msg: SimMessage, body: dict[str, Any]) -> SimMessage:
        """A broken message next to `msg`: the kinds come in turn, so the mix is even."""
        kind = self.bad_cursor
        self.bad_cursor = (kind + 1) % _MALFORMED_KINDS
        self.n_bad += 1
        event_id = f"x-{self.seed}-{self.n_bad:09d}"
        topic: Topic = msg.topic
        key = msg.key
        value: bytes
        if kind == 0:
            value = b"{not json"
        elif kind == 1:
            value = b'{"event_id": "' + event_id.encode() + b'", "type": "\xff\xfe\xfd"}'
        elif kind == 2:
            value = orjson.dumps([{**body, "event_id": event_id}])
        elif kind == 3:
            broken = {k: v for k, v in body.items() if k != "type"}
            broken["event_id"] = event_id
            value = orjson.dumps(broken)
        elif kind == 4:
            unknown = "ticket.teleported" if topic == "helpdesk" else "order.teleported"
            value = orjson.dumps({**body, "event_id": event_id, "type": unknown})
        elif kind == 5:
            naive = body["occurred_at"][:-1]  # drop the Z: no offset
            value = orjson.dumps({**body, "event_id": event_id, "occurred_at": naive})
        else:
            ticket_id = body.get("ticket_id")
            if not isinstance(ticket_id, str):
                ticket_id = self._new_ticket_id()
            topic = "helpdesk"
            key = ticket_id.encode()
            fields: dict[str, Any] = {
                "event_id": event_id,
                "occurred_at": body["occurred_at"],
                "schema_version": 1,
                "ticket_id": ticket_id,
                "customer_id": body.get("customer_id", "C-000000"),
            }
            if kind == 6:
                fields.update(
                    type="ticket.created",
                    queue=self.queues[0],
                    priority="critical",
                    channel="email",
                )
            else:
                fields.update(type="survey.csat", score=9)
            value = orjson.dumps(fields)
        return SimMessage(topic, key, value, msg.emit_at_ms, msg.occurred_at_ms, "malformed")


def simulate(config: SimConfig) -> Iterator[SimMessage]:
    """The messages of `config`, ordered by `emit_at_ms`; endless if `duration_ms` is None.

    Valid events have `occurred_at` in [start_ms, start_ms + duration_ms); late events,
    duplicates and malformed messages may be emitted after that span.
    """
    return _Engine(config).run()
