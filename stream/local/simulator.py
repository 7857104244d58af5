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
from bisect import bisect_right
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
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
# model (time_scale 0.001, no day curve, events of hours 2..6 of a 6 h run; re-measure
# after changing the model; test_for_rate_50_gives_about_50_events_per_second checks them):
# per ticket arrival, including the self-service sessions, the tickets they open and the
# agent shifts that come with the ticket rate; per order arrival, including notices and
# the tickets opened by customers asking about a delayed order.
EVENTS_PER_TICKET = 12.1
EVENTS_PER_ORDER = 6.3
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
    # How late a late event is sent, at most, in event time; None: up to 5 minutes
    # times `time_scale` (late like the rest of the scaled life).
    late_max_ms: int | None = None
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
#
# The heap holds plain tuples (time, seq, code, a, b, c, d), ordered by time then by the
# order they were pushed:
#   _EVT   a=topic, b=key, c=type, d=fields   a planned event (fields as JSON bytes); its
#                                              envelope is written when it is popped
#   _MSG   a=SimMessage                        a finished message (late or duplicate)
#   _PROC  a=generator                         an arrival process; next() handles the
#                                              arrival and yields its next wake-up time
#   _AFTER_SOLVE / _SHIP  a=args tuple         the next phase of a ticket / an order
# Lifecycles are planned phase by phase and pushed as plain tuples rather than kept as
# generators: the tuples hold only strings, bytes and numbers, so the cyclic garbage
# collector stops scanning them, which keeps the generator fast at a million
# tickets in flight.

Process = Generator[float, None, None]

_EVT = 0
_MSG = 1
_PROC = 2
_AFTER_SOLVE = 3
_SHIP = 4
_MALFORMED_KINDS = 8
_dumps = orjson.dumps


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
        self.now = float(config.start_ms)
        self.heap: list[tuple[float, int, int, Any, Any, Any, Any]] = []
        self.seq = 0
        self.n_event = {"helpdesk": 0, "orders": 0}
        self.n_ticket = 0
        self.n_order = 0
        self.n_bad = 0
        self.bad_cursor = self.rng.randrange(_MALFORMED_KINDS)
        self.n_customers = max(500, int((config.tickets_per_hour + config.orders_per_hour) * 24))
        self.recent_contacts: deque[str] = deque(maxlen=2000)
        self.n_agents = min(5000, max(4, math.ceil(config.tickets_per_hour / 6.0)))
        self.agents = [f"A-{i:04d}" for i in range(self.n_agents)]
        self.on_duty: list[str] = []
        self.queues = config.queues
        self.queue_cum = list(
            accumulate(_QUEUE_WEIGHT.get(q, _OTHER_QUEUE_WEIGHT) for q in config.queues)
        )
        self.prio_cum = list(accumulate(PRIORITY_WEIGHTS))
        self.chan_cum = list(accumulate(CHANNEL_WEIGHTS))
        self.subj_cum = list(accumulate(SUBJECT_WEIGHTS))
        self.ochan_cum = list(accumulate(ORDER_CHANNEL_WEIGHTS))
        self.cur_cum = list(accumulate(CURRENCY_WEIGHTS))
        self.csat_cum = list(accumulate(CSAT_WEIGHTS))
        self.nps_cum = list(accumulate(NPS_WEIGHTS))

    # -- helpers --

    def _push(
        self, t: float, code: int, a: Any, b: Any = None, c: Any = None, d: Any = None
    ) -> None:
        if self.end is not None and t >= self.end and code != _MSG:
            return
        if t < self.now:
            t = self.now
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, code, a, b, c, d))

    def _hd(self, t: float, key: bytes, typ: str, fields: dict[str, Any]) -> None:
        # Serialised now: a heap entry of str/bytes only is untracked by the cyclic GC.
        self._push(t, _EVT, "helpdesk", key, typ, _dumps(fields))

    def _od(self, t: float, key: bytes, typ: str, fields: dict[str, Any]) -> None:
        self._push(t, _EVT, "orders", key, typ, _dumps(fields))

    def _pick(self, values: tuple[str, ...], cum: list[float]) -> str:
        # bisect on cumulative weights; what random.choices does, without its overhead
        x = self.rng.random() * cum[-1]
        i = bisect_right(cum, x)
        return values[min(i, len(values) - 1)]

    def _lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(self.rng.gauss(0.0, sigma))

    def _customer(self) -> str:
        # Skewed: low indexes are regulars who come back often.
        return f"C-{int(self.n_customers * self.rng.random() ** 2):06d}"

    def _agent(self) -> str:
        pool = self.on_duty or self.agents
        return pool[int(self.rng.random() * len(pool))]

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

    # -- arrival processes: each yields its next wake-up time, then handles it --

    def ticket_arrivals(self) -> Process:
        for t in self._arrivals(self.cfg.tickets_per_hour):
            yield t
            self._ticket(t, self._new_ticket_id())

    def order_arrivals(self) -> Process:
        for t in self._arrivals(self.cfg.orders_per_hour):
            yield t
            self._order(t)

    def session_arrivals(self) -> Process:
        """Self-service sessions without a ticket; some fail and become one."""
        rng = self.rng
        for t in self._arrivals(self.cfg.tickets_per_hour * 0.4):
            yield t
            customer = self._customer()
            succeeded = rng.random() < 0.6
            screens = 1 + int(self._lognormal(2.5 if succeeded else 4.5, 0.6))
            clicks = screens + int(screens * rng.random() * 2.0)
            self._hd(
                t,
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
                self._ticket(at, self._new_ticket_id(), customer, channel=channel)

    def shifts(self) -> Process:
        """Agents on and off, hourly; staffing follows the day curve; shifts last <= 8 h."""
        rng = self.rng
        daily = self.cfg.daily_cycle
        since: dict[str, float] = {}
        off = list(self.agents)
        rng.shuffle(off)
        t = float(self.cfg.start_ms)
        first = True
        while True:
            yield t
            level = day_curve(t) / _DAY_MAX if daily else 0.6
            target = max(2, round(self.n_agents * 0.85 * level))
            on = self.on_duty
            changes: list[tuple[float, str, str]] = []
            # `on` is kept in shift-start order, so the longest on duty come first
            while on and (t - since[on[0]] >= 8 * HOUR or len(on) > target):
                agent = on.pop(0)
                del since[agent]
                off.insert(int(rng.random() * (len(off) + 1)), agent)
                changes.append((t + rng.uniform(0, 10 * MIN), agent, "off"))
            while len(on) < target and off:
                agent = off.pop(0)
                on.append(agent)
                since[agent] = t
                changes.append((t + (0.0 if first else rng.uniform(0, 10 * MIN)), agent, "on"))
            for at, agent, state in changes:
                self._hd(at, agent.encode(), "agent.shift", {"agent_id": agent, "state": state})
            first = False
            t = (t // HOUR + 1) * HOUR

    # -- a ticket's life --

    def _ticket(
        self,
        t0: float,
        ticket_id: str,
        customer: str | None = None,
        *,
        channel: str | None = None,
        queue: str | None = None,
        subject: str | None = None,
    ) -> None:
        """Plan a ticket from creation to its (first) solve; the rest follows at the solve."""
        rng = self.rng
        s = self.scale
        hd = self._hd
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

        created = {**base, "queue": queue, "priority": priority, "channel": channel}
        if subject is not None:
            created["subject_kind"] = subject
        hd(t0, key, "ticket.created", created)
        ack_at = t0
        if channel in ("email", "web", "self_service", "social", "other") or rng.random() < 0.2:
            ack_at = t0 + rng.uniform(2 * SEC, 90 * SEC) * s
            hd(ack_at, key, "ticket.replied", {**base, "author": "system", "public": False})

        method = "agent"
        touches = 0
        roll = rng.random()
        if channel == "phone" and roll < 0.6:
            # Solved during the call.
            first_at = t0 + rng.uniform(1 * MIN, 8 * MIN) * s
            self._agent_reply(first_at, key, base, agent)
            solve_at = first_at + rng.uniform(1 * MIN, 15 * MIN) * s
            method = "phone"
            touches = 1
        elif channel in ("web", "email", "self_service") and roll < 0.15:
            # The answer bot offers articles; a third of the time that settles it.
            at = t0 + rng.uniform(30 * SEC, 10 * MIN) * s
            ok = rng.random() < 0.35
            screens = 1 + int(self._lognormal(2.0, 0.5))
            clicks = screens + int(rng.random() * 4)
            hd(
                at,
                key,
                "selfservice.session",
                {**base, "screens": screens, "clicks": clicks, "succeeded": ok},
            )
            if ok:
                solve_at = at + rng.uniform(1 * MIN, 20 * MIN) * s
                method = "self_service"
            else:
                solve_at, touches = self._conversation(
                    t0, ack_at, key, base, priority, complaint, queue, agent
                )
        elif roll > 0.98:
            # Abandoned: nobody answers; automation solves it after a week.
            solve_at = t0 + rng.uniform(6 * DAY, 8 * DAY) * s
            method = "automation"
        else:
            solve_at, touches = self._conversation(
                t0, ack_at, key, base, priority, complaint, queue, agent
            )
            r = rng.random()
            if r < 0.05:
                method = "automation"
            elif r < 0.11:
                method = "phone"

        # Escalation, queue move and priority change happen somewhere before the solve.
        span = max(solve_at - t0, 1.0)
        if rng.random() < (0.25 if complaint else 0.07):
            reason = "complaint" if complaint else ESCALATION_REASONS[int(rng.random() * 4)]
            level = 1 if rng.random() < 0.75 else 2
            hd(
                t0 + span * rng.uniform(0.05, 0.9),
                key,
                "ticket.escalated",
                {**base, "level": level, "reason": reason},
            )
        if len(self.queues) > 1 and rng.random() < 0.12:
            other = [q for q in self.queues if q != queue]
            hd(
                t0 + span * rng.uniform(0.02, 0.6),
                key,
                "ticket.assigned",
                {**base, "queue": other[int(rng.random() * len(other))], "agent_id": self._agent()},
            )
        if rng.random() < 0.06:
            others = [p for p in PRIORITIES if p != priority]
            hd(
                t0 + span * rng.uniform(0.02, 0.5),
                key,
                "ticket.priority_changed",
                {**base, "priority": others[int(rng.random() * 3)]},
            )
        self._solved(solve_at, key, base, method, queue, complaint)
        self._push(
            solve_at, _AFTER_SOLVE, (key, ticket_id, customer, queue, complaint, agent, touches)
        )

    def _agent_reply(
        self, at: float, key: bytes, base: dict[str, str], agent: str, public: bool = True
    ) -> None:
        fields = {
            **base,
            "author": "agent",
            "public": public,
            "agent_id": agent,
            "handle_seconds": self._handle_seconds(),
        }
        self._hd(at, key, "ticket.replied", fields)

    def _customer_reply(self, at: float, key: bytes, base: dict[str, str]) -> None:
        self._hd(at, key, "ticket.replied", {**base, "author": "customer", "public": True})

    def _status(self, at: float, key: bytes, base: dict[str, str], status: str) -> None:
        self._hd(at, key, "ticket.status_changed", {**base, "status": status})

    def _solved(
        self,
        at: float,
        key: bytes,
        base: dict[str, str],
        method: str,
        queue: str,
        complaint: bool,
    ) -> None:
        fields: dict[str, Any] = {**base, "method": method}
        money_share = 0.25 if queue in ("billing", "returns") else 0.06
        if complaint:
            money_share += 0.15
        if method in ("agent", "phone") and self.rng.random() < money_share:
            fields["settled_amount"] = self._money(30.0)
        self._hd(at, key, "ticket.solved", fields)

    def _conversation(
        self,
        t0: float,
        ack_at: float,
        key: bytes,
        base: dict[str, str],
        priority: str,
        complaint: bool,
        queue: str,
        agent: str,
    ) -> tuple[float, int]:
        """Plan first response and the back-and-forth; return (solve time, agent touches)."""
        rng = self.rng
        s = self.scale
        status = self._status
        delay = self._lognormal(FIRST_RESPONSE_MEDIAN_MS[priority], FIRST_RESPONSE_SIGMA[priority])
        first_at = max(t0 + delay * s, ack_at + 5 * SEC * s)
        wait = first_at - t0
        if rng.random() < 0.65:
            at = t0 + wait * rng.uniform(0.02, 0.4)
            self._hd(at, key, "ticket.assigned", {**base, "queue": queue, "agent_id": agent})
            status(at + 1, key, base, "open")
        else:
            status(t0 + wait * rng.uniform(0.01, 0.3), key, base, "open")
        if rng.random() < 0.20:
            self._agent_reply(t0 + wait * rng.uniform(0.3, 0.95), key, base, agent, public=False)
        if rng.random() < 0.15:
            self._customer_reply(t0 + wait * rng.uniform(0.1, 0.9), key, base)
        self._agent_reply(first_at, key, base, agent)
        touches = 1
        cur = first_at
        pending = rng.random() < 0.6
        if pending:
            status(cur + rng.uniform(1 * SEC, 30 * SEC) * s, key, base, "pending")
        r = rng.random()
        extra = 0 if r < 0.45 else 1 if r < 0.75 else 2 if r < 0.90 else 3 + int(rng.random() * 3)
        if complaint and extra < 3:
            extra += 1
        if rng.random() < 0.06:
            hold_at = cur + rng.uniform(10 * MIN, 2 * HOUR) * s
            status(hold_at, key, base, "on_hold")
            cur = hold_at + self._lognormal(1 * DAY, 0.7) * s
            status(cur, key, base, "open")
            pending = False
        for _ in range(extra):
            cur += self._lognormal(4 * HOUR, 1.0) * s
            self._customer_reply(cur, key, base)
            if pending:
                status(cur + rng.uniform(0.2 * SEC, 3 * SEC) * s, key, base, "open")
            cur += self._lognormal(2 * HOUR, 1.0) * s
            self._agent_reply(cur, key, base, agent)
            touches += 1
            pending = rng.random() < 0.6
            if pending:
                status(cur + rng.uniform(1 * SEC, 30 * SEC) * s, key, base, "pending")
        if pending:
            solve_at = cur + self._lognormal(1 * HOUR, 1.0) * s
        else:
            solve_at = cur + rng.uniform(1 * MIN, 45 * MIN) * s
        return solve_at, touches

    def _after_solve(self, solve_at: float, args: tuple[Any, ...]) -> None:
        """Reopen and solve again, surveys, close."""
        key, ticket_id, customer, queue, complaint, agent, touches = args
        rng = self.rng
        s = self.scale
        hd = self._hd
        base = {"ticket_id": ticket_id, "customer_id": customer}
        final = solve_at
        if touches and rng.random() < 0.07:
            reopen_at = solve_at + self._lognormal(1 * DAY, 0.8) * s
            hd(reopen_at, key, "ticket.reopened", dict(base))
            self._customer_reply(reopen_at + rng.uniform(0.1 * SEC, 2 * SEC) * s, key, base)
            reply_at = reopen_at + self._lognormal(3 * HOUR, 0.9) * s
            self._agent_reply(reply_at, key, base, agent)
            final = reply_at + rng.uniform(10 * MIN, 3 * HOUR) * s
            self._solved(final, key, base, "agent", queue, complaint)
        if rng.random() < 0.30:
            score = 1 + bisect_right(self.csat_cum, rng.random())
            score = min(score, 5)
            if complaint and score > 1 and rng.random() < 0.4:
                score -= 1
            at = final + self._lognormal(2 * HOUR, 1.0) * s
            hd(at, key, "survey.csat", {**base, "score": score})
        if rng.random() < 0.15:
            score = min(10, bisect_right(self.nps_cum, rng.random()))
            at = final + self._lognormal(1 * DAY, 0.7) * s
            hd(at, key, "survey.nps", {**base, "score": score})
        if rng.random() < 0.97:
            hd(final + rng.uniform(3 * DAY, 5 * DAY) * s, key, "ticket.closed", dict(base))

    # -- an order's life --

    def _order(self, t0: float) -> None:
        """Plan placed -> confirmed (-> cancelled); shipping is planned at confirmation."""
        rng = self.rng
        s = self.scale
        od = self._od
        self.n_order += 1
        order_id = f"O-{self.seed}-{self.n_order:07d}"
        key = order_id.encode()
        recent = self.recent_contacts
        if recent and rng.random() < 0.3:
            customer = recent[int(rng.random() * len(recent))]
        else:
            customer = self._customer()
        base = {"order_id": order_id, "customer_id": customer}
        channel = self._pick(ORDER_CHANNELS, self.ochan_cum)
        placed = {**base, "channel": channel, "amount": self._money(45.0)}
        od(t0, key, "order.placed", placed)
        if rng.random() < 0.02:
            # Never confirmed: the payment fails and the order is cancelled.
            at = t0 + rng.uniform(5 * MIN, 2 * HOUR) * s
            od(at, key, "order.cancelled", {**base, "reason": "payment_failed"})
            return
        if channel == "store":
            clicks = 0
            latency = rng.uniform(0.2 * SEC, 3 * SEC)
        elif channel == "phone":
            clicks = 0
            latency = self._lognormal(20 * SEC, 0.6)
        else:
            r = rng.random()
            clicks = 0 if r < 0.08 else 1 if r < 0.83 else 2 + int(rng.random() * 3)
            latency = self._lognormal(8 * SEC * (1 + 0.5 * max(clicks - 1, 0)), 1.3)
        confirmed_at = t0 + latency * s
        od(confirmed_at, key, "order.confirmed", {**base, "clicks": clicks})
        if rng.random() < 0.9:
            at = confirmed_at + rng.uniform(1 * SEC, 30 * SEC) * s
            medium = "email" if rng.random() < 0.8 else "sms"
            od(at, key, "notification.sent", {**base, "kind": "confirmation", "medium": medium})
        if rng.random() < 0.04:
            at = confirmed_at + self._lognormal(2 * HOUR, 1.0) * s
            reason = "customer_request" if rng.random() < 0.7 else "out_of_stock"
            od(at, key, "order.cancelled", {**base, "reason": reason})
            return
        shipped_at = confirmed_at + self._lognormal(18 * HOUR, 0.6) * s
        self._push(shipped_at, _SHIP, (key, order_id, customer))

    def _ship(self, shipped_at: float, args: tuple[Any, ...]) -> None:
        """Shipped -> shipment notice -> maybe delayed (notice, contact) -> delivered."""
        key, order_id, customer = args
        rng = self.rng
        s = self.scale
        od = self._od
        base = {"order_id": order_id, "customer_id": customer}
        promised = shipped_at + (2, 3, 3, 4)[int(rng.random() * 4)] * DAY * s
        od(shipped_at, key, "order.shipped", {**base, "promised_by": _fmt(int(promised))})
        r = rng.random()
        notice_at: float | None = None
        if r < 0.85:
            notice_at = shipped_at + rng.uniform(0.5 * MIN, 12 * MIN) * s
        elif r < 0.93:
            notice_at = shipped_at + rng.uniform(20 * MIN, 3 * HOUR) * s
        if notice_at is not None:
            r = rng.random()
            medium = "email" if r < 0.6 else "sms" if r < 0.8 else "push"
            od(notice_at, key, "notification.sent", {**base, "kind": "shipped", "medium": medium})

        if rng.random() < 0.10:
            delayed_at = shipped_at + (promised - shipped_at) * rng.uniform(0.2, 0.9)
            new_promised = promised + rng.uniform(1 * DAY, 3 * DAY) * s
            od(
                delayed_at,
                key,
                "order.delayed",
                {**base, "new_promised_by": _fmt(int(new_promised))},
            )
            r = rng.random()
            contact_at: float | None = None
            told_at: float | None = None
            if r < 0.55:
                # Told proactively; a few ask anyway.
                told_at = delayed_at + rng.uniform(1 * MIN, 30 * MIN) * s
                if rng.random() < 0.25:
                    contact_at = told_at + rng.uniform(1 * HOUR, 12 * HOUR) * s
            elif r < 0.85:
                # The customer asks first; the notice comes after.
                contact_at = delayed_at + rng.uniform(1 * HOUR, 12 * HOUR) * s
                told_at = contact_at + rng.uniform(10 * MIN, 6 * HOUR) * s
            elif rng.random() < 0.7:
                contact_at = delayed_at + rng.uniform(2 * HOUR, 24 * HOUR) * s
            if told_at is not None:
                od(
                    told_at,
                    key,
                    "notification.sent",
                    {**base, "kind": "delayed", "medium": "email"},
                )
            if contact_at is not None:
                self._contact(contact_at, key, base, customer, complaint_share=0.4)
            if rng.random() < 0.7:
                delivered_at = new_promised - rng.uniform(0, 1 * DAY) * s
            else:
                delivered_at = new_promised + rng.uniform(2 * HOUR, 2 * DAY) * s
            delivered_at = max(delivered_at, delayed_at + 1 * HOUR * s)
        else:
            if rng.random() < 0.03:
                contact_at = shipped_at + rng.uniform(0.5 * DAY, 2 * DAY) * s
                self._contact(contact_at, key, base, customer, complaint_share=0.1)
            if rng.random() < 0.9:
                delivered_at = shipped_at + (promised - shipped_at) * rng.uniform(0.35, 0.99)
            else:
                delivered_at = promised + rng.uniform(2 * HOUR, 2 * DAY) * s
        od(delivered_at, key, "order.delivered", dict(base))

    def _contact(
        self,
        at: float,
        key: bytes,
        base: dict[str, str],
        customer: str,
        complaint_share: float,
    ) -> None:
        """The customer asks support about the order; most such contacts open a ticket."""
        if self.end is not None and at >= self.end:
            return
        rng = self.rng
        fields: dict[str, Any] = dict(base)
        if rng.random() < 0.6:
            ticket_id = self._new_ticket_id()
            fields["ticket_id"] = ticket_id
            channel = ("email", "phone", "chat", "web")[int(rng.random() * 4)]
            subject = "complaint" if rng.random() < complaint_share else "question"
            queue = "shipping" if "shipping" in self.queues else None
            self._od(at, key, "customer.contacted", fields)
            self._ticket(at + 1, ticket_id, customer, channel=channel, queue=queue, subject=subject)
        else:
            self._od(at, key, "customer.contacted", fields)

    # -- the main loop --

    def run(self) -> Iterator[SimMessage]:
        cfg = self.cfg
        procs: list[Process] = [self.shifts()]
        if cfg.tickets_per_hour > 0:
            procs += [self.ticket_arrivals(), self.session_arrivals()]
        if cfg.orders_per_hour > 0:
            procs.append(self.order_arrivals())
        for proc in procs:
            self._advance(proc)
        return self._loop()

    def _advance(self, proc: Process) -> None:
        t = next(proc)  # the processes are endless
        if self.end is not None and t >= self.end:
            proc.close()
            return
        self._push(t, _PROC, proc)

    def _push_msg(self, msg: SimMessage) -> None:
        self._push(msg.emit_at_ms, _MSG, msg)

    def _loop(self) -> Iterator[SimMessage]:
        heap = self.heap
        pop = heapq.heappop
        rng = self.rng
        cfg = self.cfg
        scale = self.scale
        prefix = {"helpdesk": f"h-{self.seed}-", "orders": f"o-{self.seed}-"}
        dup_share = cfg.duplicate_share
        bad_share = cfg.malformed_share
        late_share = cfg.late_share
        n_event = self.n_event
        fmt = _fmt
        while heap:
            t, _, code, a, b, typ, fields = pop(heap)
            self.now = t
            if code == _MSG:
                yield a
                continue
            if code != _EVT:
                if code == _PROC:
                    self._advance(a)
                elif code == _AFTER_SOLVE:
                    self._after_solve(t, a)
                else:
                    self._ship(t, a)
                continue
            now = int(t)
            n = n_event[a] + 1
            n_event[a] = n
            head = f'{{"event_id":"{prefix[a]}{n:09d}","type":"{typ}","occurred_at":"{fmt(now)}"'
            if n % 10 != 7:
                head += ',"schema_version":1'
            value = head.encode() + b"," + fields[1:]
            if late_share > 0 and rng.random() < late_share:
                late = True
                if cfg.late_max_ms is None:
                    emit = now + int(rng.uniform(1 * SEC, 5 * MIN) * scale) + 1
                else:
                    emit = now + int(rng.uniform(1, cfg.late_max_ms))
                msg = SimMessage(a, b, value, emit, now, "event")
                self._push_msg(msg)
            else:
                late = False
                msg = SimMessage(a, b, value, now, now, "event")
                yield msg
            if dup_share > 0 and rng.random() < dup_share:
                again = msg.emit_at_ms + int(rng.uniform(0, 60 * SEC) * scale)
                self._push_msg(SimMessage(a, b, value, again, now, "duplicate"))
            if bad_share > 0 and rng.random() < bad_share:
                bad = self._malformed(msg, orjson.loads(value))
                if late:
                    self._push_msg(bad)
                else:
                    yield bad

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
