"""Property: random histories of a few customers (tickets with and without complaints,
contacts about orders, orders) over about 70 days, delivered out of order (within half
the grace period) with duplicates, over one to three partitions, re-keyed by customer
onto the customer-activity topic and processed there in an interleaving that keeps each
partition's order, give final O7/O8/H8 windows (conversion_after_contact,
customer_retention, complaint_growth) equal to the batch oracle's
(tests/oracle_customers.py). This is the re-keying, the customer partitions' windows and
their merge, end to end, without a broker."""

from __future__ import annotations

import random
import zlib
from collections import deque
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream.kpi.merge import PrefixedState
from stream.kpi.timefmt import format_rfc3339_ms
from stream.runtime import CUSTOMER_MERGE_PREFIX, WorkerRuntime
from stream.settings import Settings
from tests.oracle_customers import (
    assert_customer_windows_match,
    compute_customer_windows,
)
from tests.oracle_windows import describe, message_key
from tests.scrape import scrape, total

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MONTH = 30 * DAY
SIZES_MS = (HOUR, DAY)
# A 30-day window boundary (2026-11-03T00:00:00Z): histories start on or after it, on a
# grid of minutes, hours and days, so that activities often fall on window boundaries
# and exactly 7 or 30 days after one another.
D0 = 692 * MONTH
SPAN = 70 * DAY
# How late a message may arrive, in event time: half the 10-minute grace period.
MAX_DELAY_MS = 5 * MINUTE
# The closing events: this long after the last event, on every input partition.
CLOSING_AFTER = 150 * DAY

FIRST_AT = st.sampled_from([0, HOUR, DAY, 10 * DAY, 29 * DAY + 23 * HOUR, MONTH])
GAPS = st.sampled_from(
    [0, MINUTE, 5 * MINUTE, HOUR, 6 * HOUR, DAY, 3 * DAY, 6 * DAY, 7 * DAY, 8 * DAY, MONTH]
)
JITTER = st.sampled_from([0, 0, 0, 0, 1, -1])
ACTIONS = st.sampled_from(["ticket", "complaint", "contact", "order", "order"])


def _envelope(event_id: str, type_: str, at_ms: int, customer: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "occurred_at": format_rfc3339_ms(at_ms),
        "customer_id": customer,
        "t": at_ms,
    }


def ticket_created(event_id: str, at_ms: int, customer: str, ticket_id: str, kind: str | None):
    event = {
        **_envelope(event_id, "ticket.created", at_ms, customer),
        "ticket_id": ticket_id,
        "queue": "billing",
        "priority": "normal",
        "channel": "email",
    }
    if kind is not None:
        event["subject_kind"] = kind
    return event


def order_placed(event_id: str, at_ms: int, customer: str, order_id: str) -> dict[str, Any]:
    return {**_envelope(event_id, "order.placed", at_ms, customer), "order_id": order_id}


@st.composite
def customer_history(draw: Any, number: int) -> list[dict[str, Any]]:
    """One customer's events: tickets (complaints or not), contacts about one of their
    orders (placed already or not), orders; each a grid step after the one before."""
    customer = f"c{number}"
    t = D0 + draw(FIRST_AT)
    orders: list[str] = []
    events: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 10))):
        if n:
            t += draw(GAPS) + draw(JITTER)
        if t > D0 + SPAN:
            break
        action = draw(ACTIONS)
        event_id = f"{customer}-{n:02d}"
        if action in ("ticket", "complaint"):
            kind = (
                "complaint"
                if action == "complaint"
                else draw(st.sampled_from([None, "question", "incident"]))
            )
            events.append(ticket_created(event_id, t, customer, f"T-{customer}-{n}", kind))
        elif action == "order":
            order_id = f"O-{customer}-{n}"
            orders.append(order_id)
            events.append(order_placed(event_id, t, customer, order_id) | {"channel": "web"})
        else:
            about = draw(st.sampled_from(orders)) if orders else f"O-{customer}-none"
            event = _envelope(event_id, "customer.contacted", t, customer)
            events.append({**event, "order_id": about})
    return events


@st.composite
def delivery(draw: Any) -> list[dict[str, Any]]:
    """Every customer's events, delivered up to 5 minutes late (never beyond the grace
    period), with re-deliveries of earlier messages, themselves within grace."""
    events = [e for n in range(draw(st.integers(1, 6))) for e in draw(customer_history(n))]
    delays = draw(
        st.lists(st.integers(0, MAX_DELAY_MS), min_size=len(events), max_size=len(events))
    )
    order = sorted(range(len(events)), key=lambda i: (events[i]["t"] + delays[i], i))
    stream = [events[i] for i in order]
    for _ in range(draw(st.integers(0, 4))):
        source = draw(st.integers(0, len(stream) - 1))
        target = draw(st.integers(source + 1, len(stream)))
        if stream[source]["t"] + MAX_DELAY_MS >= max(e["t"] for e in stream[:target]):
            stream.insert(target, stream[source])
    return stream


def crc_partition(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def is_helpdesk(event: dict[str, Any]) -> bool:
    return event["type"].startswith("ticket.")


def input_partition(event: dict[str, Any], partitions: int) -> int:
    """A ticket's events on one partition (key ticket_id), an order's (key order_id)."""
    key = event["ticket_id"] if is_helpdesk(event) else event["order_id"]
    return crc_partition(key, partitions)


def closing_events(stream: list[dict[str, Any]], partitions: int) -> list[dict[str, Any]]:
    """A ticket and an order of throwaway customers on every input partition, long
    after everything: every window of the histories becomes final."""
    t = max(e["t"] for e in stream) + CLOSING_AFTER
    out: list[dict[str, Any]] = []
    for p in range(partitions):
        ticket_id = next(
            f"T-end-{i}" for i in range(10_000) if crc_partition(f"T-end-{i}", partitions) == p
        )
        order_id = next(
            f"O-end-{i}" for i in range(10_000) if crc_partition(f"O-end-{i}", partitions) == p
        )
        out.append(ticket_created(f"END-h{p}", t, f"z-h{p}", ticket_id, None))
        out.append(order_placed(f"END-o{p}", t, f"z-o{p}", order_id) | {"channel": "web"})
    return out


class Harness:
    """The worker's runtime with dicts for the Faust tables, FIFO queues for the
    partitions of the customer-activity topic, and the window-partials topic replaced by
    calling the merge directly; the KPI topic is a list of messages."""

    def __init__(self, partitions: int, rng: random.Random) -> None:
        self.partitions = partitions
        self.rng = rng
        self.config = Settings(
            partitions=partitions,
            windows=("1h", "1d"),
            grace="10m",
            live=False,
            max_future="off",  # the clock is event time here
            retention_window="30d",
            active_customer_window="30d",
            conversion_window="7d",
        )
        self.runtime = WorkerRuntime(self.config, CollectorRegistry())
        self.tickets: dict[str, Any] = {}
        self.scopes: dict[str, Any] = {}
        self.orders: dict[str, Any] = {}
        self.customers: dict[str, Any] = {}
        self.kpi_state: dict[str, Any] = {}
        self.merge_state: dict[str, Any] = {}
        self.queues: dict[int, deque[bytes]] = {p: deque() for p in range(partitions)}
        # The last messages each customer partition processed: not committed yet, so a
        # restart delivers them again.
        self.uncommitted: dict[int, deque[bytes]] = {p: deque(maxlen=2) for p in range(partitions)}
        self.late_before_restarts = 0.0
        self.emitted: list[tuple[str, dict[str, Any] | None]] = []
        self.topic: dict[str, dict[str, Any]] = {}

    def _write(self, writes: dict[str, Any]) -> None:
        for key, value in writes.items():
            if value is None:
                self.kpi_state.pop(key, None)
            else:
                self.kpi_state[key] = value

    def feed(self, event: dict[str, Any]) -> None:
        body = orjson.dumps({k: v for k, v in event.items() if k != "t"})
        partition = input_partition(event, self.partitions)
        if is_helpdesk(event):
            result = self.runtime.process_helpdesk(
                body, partition, self.tickets, self.scopes, now_ms=0
            )
        else:
            result = self.runtime.process_order(body, partition, self.orders, now_ms=0)
        assert result.rejection is None, f"the generator made an invalid event {event}: {result}"
        self._write(result.state_writes)
        for customer, value in result.activities:
            self.queues[crc_partition(customer, self.partitions)].append(value)

    def consume(self, partition: int, count: int | None = None) -> None:
        """Process up to `count` messages (all without) of a customer partition, in order."""
        queue = self.queues[partition]
        for _ in range(len(queue) if count is None else min(count, len(queue))):
            if not queue:
                return
            value = queue.popleft()
            # Activities often come a batch to a message (stream/activity_batches.py):
            # a few of the ones queued next, marks never among them.
            batch = [value]
            while self.rng.random() < 0.5 and queue and self._activity(batch[-1]):
                if not self._activity(queue[0]):
                    break
                batch.append(queue.popleft())
            if len(batch) > 1:
                value = b"[" + b",".join(batch) + b"]"
            self.uncommitted[partition].append(value)
            result = self.runtime.process_customer(value, partition, self.customers, now_ms=0)
            assert not result.malformed, f"customer partition {partition}: malformed {value!r}"
            self._write(result.state_writes)

    @staticmethod
    def _activity(value: bytes) -> bool:
        """One activity's message (not a mark, not a batch already)."""
        return not value.startswith(b"[") and b'"upstream"' not in value

    def consume_some(self) -> None:
        """A random customer partition takes a few of its messages, as consumers do."""
        self.consume(self.rng.randrange(self.partitions), self.rng.randint(1, 4))

    def drain(self) -> None:
        for partition in range(self.partitions):
            self.consume(partition)

    def tick(self) -> int:
        """The clock: partials to the merge, then every input partition's marks onto the
        customer topic (behind the activities already sent). Returns the KPI messages."""
        emitted = 0
        for partial in self.runtime.tick(0, self.tickets, self.orders, self.customers):
            for key, message in self.runtime.merge_step(partial, self.merge_state, 0):
                emitted += 1
                self.emitted.append((key, message))
                if message is None:
                    self.topic.pop(key, None)
                else:
                    self.topic[key] = message
        self.runtime.partials_delivered()
        for partition, value in self.runtime.upstream_marks(0):
            self.queues[partition].append(value)
        return emitted

    def restart(self) -> None:
        """A new worker: the tables survive (changelogs), memory does not; the customer
        partitions' last messages come again (the input's are fed again by `run`)."""
        self.late_before_restarts += self.late()
        self.runtime = WorkerRuntime(self.config, CollectorRegistry())
        everything = range(self.partitions)
        self.runtime.load_partitions(
            everything, self.kpi_state.items(), self.tickets.items(), self.scopes.items()
        )
        self.runtime.load_order_partitions(everything, self.kpi_state.items(), self.orders.items())
        self.runtime.load_customer_partitions(
            everything, self.kpi_state.items(), self.customers.items()
        )
        self.runtime.load_merge_state(list(self.merge_state))
        for partition, again in self.uncommitted.items():
            self.queues[partition].extendleft(reversed(again))
            again.clear()

    def final_through(self) -> int | None:
        state = PrefixedState(self.merge_state, CUSTOMER_MERGE_PREFIX)
        return self.runtime.customer_merger.marks(state)[1]

    def late(self) -> float:
        return total(scrape(self.runtime.registry), "kpistream_events_late_total")

    def finished_late(self) -> float:
        return self.late_before_restarts + self.late()


def assert_finals_stay(emitted: list[tuple[str, dict[str, Any] | None]]) -> None:
    """After a key's final message only the same final message may follow."""
    finals: dict[str, dict[str, Any]] = {}
    for key, message in emitted:
        if key in finals:
            assert message is not None, f"{key}: tombstone after the final message"
            label = describe(message_key(message))
            assert message["is_final"], f"{label}: a non-final message after the final one"
            assert message["values"] == finals[key]["values"], (
                f"{label}: changed after final: {finals[key]['values']} -> {message['values']}"
            )
        elif message is not None and message["is_final"]:
            finals[key] = message


def run(
    stream: list[dict[str, Any]], partitions: int, rng: random.Random, restarts: bool
) -> Harness:
    harness = Harness(partitions, rng)
    for i, event in enumerate(stream):
        harness.feed(event)
        step = rng.random()
        if step < 0.4:
            harness.consume_some()
        elif step < 0.55:
            harness.tick()
        elif restarts and step < 0.6:
            harness.restart()
            # The last input messages, not yet committed, are delivered again.
            for again in stream[max(0, i - 1) : i + 1]:
                harness.feed(again)
    harness.tick()
    for event in closing_events(stream, partitions):
        harness.feed(event)
    # Until nothing new: deliver everything, tick, deliver the marks, ...
    for round_ in range(8):
        harness.drain()
        if not harness.tick() and round_ >= 2:
            break
    harness.drain()
    harness.tick()
    return harness


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery(), st.sampled_from([1, 2, 3]), st.randoms(use_true_random=False), st.booleans())
def test_final_customer_windows_equal_the_oracle(
    stream: list[dict[str, Any]], partitions: int, rng: random.Random, restarts: bool
) -> None:
    harness = run(stream, partitions, rng, restarts)
    assert harness.finished_late() == 0  # nothing beyond grace

    closing = closing_events(stream, partitions)
    everything = stream + closing
    expected = compute_customer_windows(
        [e for e in everything if is_helpdesk(e)],
        [e for e in everything if not is_helpdesk(e)],
        SIZES_MS,
    )
    final_through = harness.final_through()
    assert final_through is not None, "a customer partition never reported its marks"
    last = max(e["t"] for e in stream)
    # Every window of the real histories ends by last + 60 d (a deactivation at
    # last + 30 d in its 30-day window); all of them must be final.
    assert final_through >= last + 100 * DAY, (final_through, last)
    assert all(k[2] + k[1] > final_through for k in expected if k[2] + k[1] > last + 100 * DAY)

    assert_finals_stay(harness.emitted)
    assert_customer_windows_match(list(harness.topic.values()), expected, final_through)
    sent = [message for _, message in harness.emitted if message is not None]
    assert_customer_windows_match(sent, expected, final_through)

    # The comparison covered each KPI the history has the ingredients of.
    compared = {m["kpi"] for m in harness.topic.values() if m["is_final"]}
    kinds = {e["type"] for e in stream}
    if kinds & {"ticket.created", "customer.contacted"}:
        assert "conversion_after_contact" in compared
    if "order.placed" in kinds:
        assert {"customer_retention", "complaint_growth"} <= compared
    if "ticket.created" in kinds:
        assert "complaint_growth" in compared


# --------------------------------------------------------------------------------------
# The smallest histories the property test found failing (with restarts), step by step.


def id_on(partition: int, stem: str, partitions: int) -> str:
    """An id (ticket or order) that lands on the given input partition."""
    return next(
        f"{stem}{i}" for i in range(10_000) if crc_partition(f"{stem}{i}", partitions) == partition
    )


def finish_and_compare(harness: Harness, events: list[dict[str, Any]]) -> None:
    closing = closing_events(events, harness.partitions)
    for event in closing:
        harness.feed(event)
    for _ in range(5):
        harness.drain()
        harness.tick()
    everything = events + closing
    expected = compute_customer_windows(
        [e for e in everything if is_helpdesk(e)],
        [e for e in everything if not is_helpdesk(e)],
        SIZES_MS,
    )
    final_through = harness.final_through()
    assert final_through is not None
    assert_customer_windows_match(list(harness.topic.values()), expected, final_through)
    assert harness.finished_late() == 0


def restart_with_everything_committed(harness: Harness) -> None:
    for queue in harness.uncommitted.values():
        queue.clear()
    harness.restart()


def test_a_restart_keeps_a_final_partial_the_merge_has_while_another_partition_is_behind() -> None:
    """Customer partition 1 sends the final partial of [D0, D0 + 1 h) (one ticket) and its
    marks; partition 0 is still at D0, so the merge waits. The worker restarts before
    partition 1 processes another message (its persisted marks are the older ones). The
    rebuilt partition 1 resets from its persisted watermark (D0 - 10 min), which deletes
    its partial in the merge, while the merge keeps partition 1's newer marks; when
    partition 0 catches up the merge makes the window final without partition 1's
    ticket, and partition 1's re-sent partial is then ignored as stale."""
    n = 2
    a, b = "c0", "c4"  # on customer partitions 1 and 0
    assert (crc_partition(a, n), crc_partition(b, n)) == (1, 0)
    first = [ticket_created("a", D0, a, id_on(0, "TA", n), None)]
    later = []
    for p in range(n):  # every input partition: an event of b at D0 and at D0 + 1 d
        first.append(ticket_created(f"h{p}", D0, b, id_on(p, "TB", n), None))
        first.append(order_placed(f"o{p}", D0, b, id_on(p, "OB", n)) | {"channel": "web"})
        later.append(ticket_created(f"H{p}", D0 + DAY, b, id_on(p, "TC", n), None))
        later.append(order_placed(f"O{p}", D0 + DAY, b, id_on(p, "OC", n)) | {"channel": "web"})
    harness = Harness(n, random.Random(0))
    for event in first:
        harness.feed(event)
    harness.tick()  # upstream marks at D0
    harness.drain()  # both customer partitions at D0 (persisted)
    harness.tick()
    for event in later:
        harness.feed(event)
    harness.tick()  # upstream marks at D0 + 1 d
    harness.consume(1)  # partition 1 at D0 + 1 d, partition 0 still at D0
    harness.tick()  # partition 1: final partial of [D0, D0 + 1 h), marks
    restart_with_everything_committed(harness)
    harness.tick()  # the rebuilt partitions reset
    harness.consume(0)  # partition 0 catches up
    for _ in range(4):
        harness.tick()
        harness.drain()
    # Oracle: complaint_growth 1h [D0, D0 + 1 h) has 3 tickets (a's and b's two).
    finish_and_compare(harness, first + later)


def test_a_conversion_period_that_ends_after_a_restart_is_not_late() -> None:
    """One customer.contacted at D0 + 1 h (customer partition 1), processed with the
    marks before a restart; after it, every input partition moves to D0 + 30 d. The
    unconverted period ends at D0 + 7 d + 1 h: it must count (contacted 1, converted 0)
    in the 1h and 1d windows holding its end. It is counted late instead and those
    windows have no conversion_after_contact message (with one partition it is fine)."""
    n = 2
    contact = _envelope("k", "customer.contacted", D0 + HOUR, "c1") | {
        "order_id": id_on(0, "OK", n)
    }
    later = []
    for p in range(n):
        later.append(ticket_created(f"h{p}", D0 + MONTH, "c9", id_on(p, "TB", n), None))
        later.append(
            order_placed(f"o{p}", D0 + MONTH, "c9", id_on(p, "OB", n)) | {"channel": "web"}
        )
    harness = Harness(n, random.Random(0))
    harness.feed(contact)
    harness.tick()
    harness.drain()  # the contact and the marks (D0 + 1 h of the one input partition)
    restart_with_everything_committed(harness)
    harness.tick()
    for event in later:
        harness.feed(event)
    for _ in range(4):
        harness.drain()
        harness.tick()
    finish_and_compare(harness, [contact, *later])
