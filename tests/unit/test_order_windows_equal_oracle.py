"""Property: random order histories, delivered out of order (within the grace period),
with duplicates, over one or two partitions, with the clock ticking and the worker
restarting at random moments, give final order KPI-topic windows (O1-O6) equal to the
batch oracle's (tests/oracle_orders.py): counts exactly, percentiles within the sketch's
error. This is the streaming order core, the partition windows and the merge, end to
end, without a broker."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream.kpi.merge import PrefixedState
from stream.kpi.timefmt import format_rfc3339_ms
from stream.runtime import ORDER_MERGE_PREFIX, WorkerRuntime
from stream.settings import Settings
from tests.oracle_orders import assert_order_windows_match, compute_order_windows
from tests.oracle_windows import describe, message_key
from tests.scrape import scrape, total

T0 = 1_795_515_330_000  # 2026-11-24T10:15:30Z
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WINDOWS = ("10m", "1h", "1d")
SIZES_MS = (10 * MINUTE, HOUR, DAY)
CHANNELS = ("web", "app", "phone", "store")
# How late a message may arrive, in event time: half the 10-minute grace period.
MAX_DELAY_MS = 5 * MINUTE

# Offsets that straddle the targets (O2: P + 60 s, O4: S + 15 min, O6: promised_by) so
# the boundaries are exercised, not only the easy middles.
CONFIRMATION_AFTER_P = st.sampled_from(
    [0, SECOND, 30 * SECOND, 59_999, MINUTE, MINUTE + 1, 61 * SECOND, 5 * MINUTE]
)
CANCELLATION_AFTER_P = st.sampled_from(
    [0, 30 * SECOND, MINUTE, MINUTE + 1, 2 * MINUTE, 20 * MINUTE, 3 * HOUR]
)
SHIPMENT_AFTER_P = st.sampled_from([30 * SECOND, 5 * MINUTE, 20 * MINUTE, HOUR, 2 * HOUR])
NOTICE_AT_TARGET = st.sampled_from([14 * MINUTE, 15 * MINUTE, 15 * MINUTE + 1, 16 * MINUTE])
NOTICE_AFTER_S = st.sampled_from(
    [-MINUTE, -1, 0, SECOND, 14 * MINUTE, 15 * MINUTE, 15 * MINUTE + 1, 16 * MINUTE, HOUR]
)
PROMISE_AFTER_S = st.sampled_from([HOUR, 2 * HOUR, DAY])
DELIVERY_AROUND_PROMISE = st.sampled_from([-30 * MINUTE, -1, 0, 1, 30 * MINUTE])
DELAY_AFTER = st.sampled_from([-MINUTE, 0, 10 * MINUTE, HOUR])
REACTION_AFTER_D = st.sampled_from([-MINUTE, 0, 1, SECOND, 5 * MINUTE, 20 * MINUTE])
# Noise: any order event at any of these offsets from P (before it too).
NOISE_AFTER_P = st.sampled_from(
    [-10 * MINUTE, -MINUTE, -1, 0, 1, 30 * SECOND, 61 * SECOND, 10 * MINUTE, HOUR, 3 * HOUR]
)
NOTICE_KINDS = st.sampled_from(["shipped", "shipped", "delayed", "confirmation"])
MEDIA = st.sampled_from(["email", "sms", "push"])


# RFC 3339 spellings producers may use (EVENTS.md): Z or an offset, milliseconds optional.
OFFSETS = st.sampled_from([None, None, timedelta(hours=2), timedelta(hours=-5, minutes=-30)])


def rfc3339(at_ms: int, offset: timedelta | None) -> str:
    """at_ms as RFC 3339: '...Z' with milliseconds without an offset, else in that
    offset's local time, milliseconds left out when they are 0."""
    if offset is None:
        return format_rfc3339_ms(at_ms)
    local = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(timezone(offset))
    return local.isoformat(timespec="milliseconds" if at_ms % 1000 else "seconds")


def _stamp(at: int | None) -> dict[str, Any]:
    return {} if at is None else {"promised_by": format_rfc3339_ms(at)}


def notification(draw: Any, kind: str | None = None) -> dict[str, Any]:
    return {
        "type": "notification.sent",
        "kind": kind or draw(NOTICE_KINDS),
        "medium": draw(MEDIA),
    }


def any_order_event(draw: Any, p: int) -> dict[str, Any]:
    """An order event of any type (noise: second confirmations, shipments, ...)."""
    kind = draw(
        st.sampled_from(
            [
                "order.placed",
                "order.confirmed",
                "order.shipped",
                "order.delayed",
                "order.delivered",
                "order.cancelled",
                "notification.sent",
                "customer.contacted",
            ]
        )
    )
    if kind == "order.placed":  # a second placement: changes nothing, unless earlier
        return {"type": kind, "channel": draw(st.sampled_from(CHANNELS))}
    if kind == "order.confirmed":
        return {"type": kind, "clicks": draw(st.integers(0, 4))}
    if kind == "order.shipped":
        return {"type": kind, **_stamp(p + draw(PROMISE_AFTER_S) if draw(st.booleans()) else None)}
    if kind == "notification.sent":
        return notification(draw)
    if kind == "customer.contacted" and draw(st.booleans()):
        return {"type": kind, "ticket_id": "T-1"}
    return {"type": kind}


@st.composite
def order_events(draw: Any, number: int) -> list[dict[str, Any]]:
    """One order's events (a placement, maybe a confirmation, a cancellation, a
    shipment with notices, a delay with reactions, a delivery, and noise: events of any
    type, a second placement, events stamped before the placement)."""
    order = f"O{number}"
    p = T0 + draw(st.integers(0, 2 * HOUR))
    items: list[tuple[int, dict[str, Any]]] = [
        (p, {"type": "order.placed", "channel": draw(st.sampled_from(CHANNELS))})
    ]
    if draw(st.integers(0, 3)):
        clicks = draw(st.integers(0, 4))
        items.append(
            (p + draw(CONFIRMATION_AFTER_P), {"type": "order.confirmed", "clicks": clicks})
        )
    if not draw(st.integers(0, 3)):
        items.append((p + draw(CANCELLATION_AFTER_P), {"type": "order.cancelled", "reason": "x"}))
    s = p + draw(SHIPMENT_AFTER_P)
    promise = s + draw(PROMISE_AFTER_S) if draw(st.booleans()) else None
    if draw(st.booleans()):
        items.append((s, {"type": "order.shipped", **_stamp(promise)}))
        if draw(st.integers(0, 3)):  # mostly a shipment notice around the target
            items.append((s + draw(NOTICE_AT_TARGET), notification(draw, "shipped")))
        for _ in range(draw(st.integers(0, 2))):
            items.append((s + draw(NOTICE_AFTER_S), notification(draw)))
    if draw(st.booleans()):
        d = draw(st.sampled_from([p, s])) + draw(DELAY_AFTER)
        new_promise = {"new_promised_by": format_rfc3339_ms(d + DAY)} if draw(st.booleans()) else {}
        items.append((d, {"type": "order.delayed", **new_promise}))
        for _ in range(draw(st.integers(0, 3))):
            reaction = draw(st.sampled_from(["notice", "contact", "contact"]))
            event = (
                notification(draw, "delayed")
                if reaction == "notice"
                else {"type": "customer.contacted"}
            )
            items.append((d + draw(REACTION_AFTER_D), event))
    if draw(st.booleans()):
        base = promise if promise is not None else s + 2 * HOUR
        items.append((base + draw(DELIVERY_AROUND_PROMISE), {"type": "order.delivered"}))
    for _ in range(draw(st.integers(0, 3))):
        items.append((p + draw(NOISE_AFTER_P), any_order_event(draw, p)))
    if not draw(st.integers(0, 7)):
        items = items[1:]  # a placement that never comes: the order counts nowhere
    # A delivery stamped long before a shipment would take its promise (O6) from an
    # event that may arrive after the delivery's window is final: a late effect, left
    # out of the final windows by design, which the oracle (no watermark) cannot see.
    # Within the 5 minutes of delivery jitter no window of the delivery can be final.
    shipments = [t for t, event in items if event["type"] == "order.shipped"]
    if shipments:
        items = [
            (t, event)
            for t, event in items
            if event["type"] != "order.delivered" or t >= max(shipments) - MAX_DELAY_MS
        ]
    # Event ids in a random order, so that ties of the same millisecond go either way.
    ids = draw(st.permutations(range(len(items))))
    out = []
    for i, (t, event) in enumerate(items):
        envelope: dict[str, Any] = {
            "event_id": f"{order}-{ids[i]:02d}",
            "order_id": order,
            "customer_id": f"C{number % 3}",
            "t": t,
            "occurred_at": rfc3339(t, draw(OFFSETS)),
        }
        if draw(st.booleans()):
            envelope["schema_version"] = 1  # absent means 1
        if event["type"] == "order.placed" and draw(st.booleans()):
            envelope["amount"] = {"value": "25.50", "currency": "EUR"}
        out.append({**event, **envelope})
    return out


@st.composite
def delivery(draw: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event, delivered up to 5 minutes late (so never beyond the grace period),
    with re-deliveries of earlier messages; and what happens after each message."""
    events = [e for n in range(draw(st.integers(1, 8))) for e in draw(order_events(n))]
    delays = draw(
        st.lists(st.integers(0, MAX_DELAY_MS), min_size=len(events), max_size=len(events))
    )
    stream = [
        e for _, e in sorted(zip(delays, events, strict=True), key=lambda p: p[1]["t"] + p[0])
    ]
    for _ in range(draw(st.integers(0, 5)) if stream else 0):
        source = draw(st.integers(0, len(stream) - 1))
        target = draw(st.integers(source + 1, len(stream)))
        if stream[source]["t"] + MAX_DELAY_MS >= max(e["t"] for e in stream[:target]):
            stream.insert(target, stream[source])  # a duplicate, itself within grace
    # After each message: nothing, a tick of the clock, or a restart of the worker.
    steps = st.sampled_from(["", "", "", "tick", "tick", "restart"])
    ticks = draw(st.lists(steps, min_size=len(stream), max_size=len(stream)))
    return stream, ticks


def partition_of(event: dict[str, Any], partitions: int) -> int:
    """All events of one order on one partition, as the key order_id does."""
    return zlib.crc32(event["order_id"].encode()) % partitions


def closing_events(stream: list[dict[str, Any]], partitions: int) -> list[tuple[int, dict]]:
    """One placement per partition, three days after everything: every partition's
    watermark passes every window of the histories, so they all become final."""
    t = max(e["t"] for e in stream) + 3 * DAY
    return [
        (
            p,
            {
                "event_id": f"END-{p}",
                "type": "order.placed",
                "occurred_at": format_rfc3339_ms(t),
                "order_id": f"END-{p}",
                "customer_id": "C-end",
                "channel": "web",
                "t": t,
            },
        )
        for p in range(partitions)
    ]


class Harness:
    """The worker's runtime with dict tables standing in for the Faust tables, the
    window-partials topic replaced by calling the merge directly, and the KPI topic by
    a list of messages (and its compacted view, the latest message per key)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.config = Settings(
            max_future="off", live=False, grace="10m", windows=WINDOWS, partitions=partitions
        )
        self.runtime = WorkerRuntime(self.config, CollectorRegistry())
        self.tickets: dict[str, Any] = {}
        self.orders: dict[str, Any] = {}
        self.kpi_state: dict[str, Any] = {}
        self.merge_state: dict[str, Any] = {}
        # What the merge sent to the KPI topic, in order: (key, message or None).
        self.emitted: list[tuple[str, dict[str, Any] | None]] = []
        self.topic: dict[str, dict[str, Any]] = {}
        self.late = 0.0

    def feed(self, event: dict[str, Any], partition: int) -> None:
        body = {k: v for k, v in event.items() if k != "t"}
        result = self.runtime.process_order(orjson.dumps(body), partition, self.orders, now_ms=0)
        assert result.rejection is None, f"the generator made an invalid event {body}: {result}"
        self.kpi_state.update(result.state_writes)

    def tick(self) -> None:
        for partial in self.runtime.tick(0, self.tickets, self.orders):
            for key, message in self.runtime.merge_step(partial, self.merge_state, 0):
                self.emitted.append((key, message))
                if message is None:
                    self.topic.pop(key, None)  # a tombstone deletes the key
                else:
                    self.topic[key] = message
        self.runtime.partials_delivered()  # as the agent does once Kafka has them

    def restart(self) -> None:
        """A new worker: the tables survive (changelogs), memory does not."""
        self.late += total(scrape(self.runtime.registry), "kpistream_events_late_total")
        self.runtime = WorkerRuntime(self.config, CollectorRegistry())
        self.runtime.load_order_partitions(
            range(self.partitions), self.kpi_state.items(), self.orders.items()
        )
        self.runtime.load_merge_state(list(self.merge_state))

    def final_through(self) -> int | None:
        state = PrefixedState(self.merge_state, ORDER_MERGE_PREFIX)
        return self.runtime.order_merger.marks(state)[1]

    def finished_late(self) -> float:
        return self.late + total(scrape(self.runtime.registry), "kpistream_events_late_total")


def assert_finals_stay(emitted: list[tuple[str, dict[str, Any] | None]]) -> None:
    """Final windows do not change: after a key's final message, only the same final
    message again (a re-emission after a restart) may follow, never a tombstone."""
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


def run(stream: list[dict[str, Any]], ticks: list[str], partitions: int) -> Harness:
    harness = Harness(partitions)
    for i, (event, step) in enumerate(zip(stream, ticks, strict=True)):
        harness.feed(event, partition_of(event, partitions))
        if step == "tick":
            harness.tick()
        elif step == "restart":
            harness.restart()
            # The last messages, not yet committed, are delivered again.
            for again in stream[max(0, i - 2) : i + 1]:
                harness.feed(again, partition_of(again, partitions))
    harness.tick()
    for partition, event in closing_events(stream, partitions):
        harness.feed(event, partition)
    harness.tick()
    return harness


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery(), st.sampled_from([1, 2]))
def test_final_order_windows_equal_the_oracle(case: Any, partitions: int) -> None:
    stream, ticks = case
    assume(stream)  # an order may come with no event at all
    harness = run(stream, ticks, partitions)

    assert harness.finished_late() == 0  # nothing beyond grace
    expected = compute_order_windows(stream, SIZES_MS)
    final_through = harness.final_through()
    assert final_through is not None  # every partition has reported its marks
    # The closing events make every window of the histories final, so none is skipped.
    assert all(k[2] + k[1] <= final_through for k in expected)
    assert_finals_stay(harness.emitted)
    # The compacted topic (latest per key) and every final message ever sent.
    assert_order_windows_match(list(harness.topic.values()), expected, final_through)
    sent = [message for _, message in harness.emitted if message is not None]
    assert_order_windows_match(sent, expected, final_through)
