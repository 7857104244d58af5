"""The Quix Streams peer of the kpi-stream benchmark.

A Quix Streams application that reads the same pre-loaded help-desk topic as our worker
and computes the benchmark's KPIs the way a competent Quix user would write them:

1. help-desk events per queue and tumbling event-time window (1 minute, 1 hour);
2. active tickets (created or reopened and not yet solved/closed), at the end of each
   1-minute and 1-hour window;
3. first-response time p50/p90/p99 per 1-hour window, from a DDSketch.

Runs in its own virtualenv (benchmarks/peers/requirements.txt), see README.md there:

    .kpi/bench-venv/bin/python benchmarks/peers/quix_app.py --bootstrap 127.0.0.1:9092 \\
        --topic bench.helpdesk.events [--topic bench.orders.events] --expected 250000 \\
        --group quix-1 --state-dir /tmp/quix-state [--output-prefix quix]

Once it has consumed `--expected` messages of its input topics (malformed ones
included) and the repartition topics hold nothing it has not processed yet, it prints
one JSON line on stdout ({"processed", "first_wall_ms", "last_wall_ms", "rss_bytes"})
and exits 0. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from ddsketch.mapping import LogarithmicMapping
from quixstreams import Application, State
from quixstreams.dataframe.windows import Aggregator, Count, Sum
from quixstreams.error_callbacks import default_on_consumer_error
from quixstreams.models import TopicConfig
from quixstreams.models.serializers import JSONDeserializer, SerializationError

log = logging.getLogger("quix_peer")

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# How long a window waits for out-of-order events. The worker's KPI_GRACE is 10 minutes,
# but the worker closes a window only once every partition has passed it; Quix closes
# it on the newest timestamp its key has seen. Replaying a pre-loaded topic, the consumer
# reads the partitions in chunks (max.partition.fetch.bytes, 1 MiB) that are up to ~40
# minutes of event time apart on the benchmark's feed (more on a sparser one): with 10
# minutes Quix dropped a tenth of the window updates there as late. See README.md.
GRACE_MS = HOUR_MS
# The worker keeps a ticket 7 days (event time) after its last event; the same here, as
# an event-time TTL on the ticket's state, so the state does not grow without bound.
TICKET_RETENTION = timedelta(days=7)
# Event ids remembered per key for de-duplication. A ticket has a few dozen events at
# most; agents and anonymous customers (keys without a ticket) keep only their latest.
MAX_IDS = 200
# Same accuracy as the worker's sketches (KPI_SKETCH_RELATIVE_ACCURACY).
RELATIVE_ACCURACY = 0.01
NO_QUEUE = "none"  # events without a ticket: agent shifts, anonymous self-service
UNKNOWN_QUEUE = "unknown"  # ticket events that arrive before their ticket.created

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

# --- input validation --------------------------------------------------------------
#
# Just the fields of ../shared/EVENTS.md that decide validity, checked by hand: a JSON
# Schema validator per message (JSONDeserializer(schema=...) with schemas/events/) costs
# about 180 us a message here, more than twice the rest of the pipeline. What fails
# goes to on_consumer_error, which counts it and goes on.

PRIORITIES = frozenset({"urgent", "high", "normal", "low"})
CHANNELS = frozenset({"email", "web", "phone", "chat", "social", "self_service", "other"})
STATUSES = frozenset({"new", "open", "pending", "on_hold", "solved", "closed"})
METHODS = frozenset({"agent", "self_service", "automation", "phone"})
AUTHORS = frozenset({"agent", "customer", "system"})


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _one_of(values: frozenset[str]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in values


def _score(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and low <= v <= high


_TICKET = (("ticket_id", _is_str), ("customer_id", _is_str))
REQUIRED: dict[str, tuple[tuple[str, Callable[[Any], bool]], ...]] = {
    "ticket.created": (
        *_TICKET,
        ("queue", _is_str),
        ("priority", _one_of(PRIORITIES)),
        ("channel", _one_of(CHANNELS)),
    ),
    "ticket.replied": (*_TICKET, ("author", _one_of(AUTHORS)), ("public", _is_bool)),
    "ticket.status_changed": (*_TICKET, ("status", _one_of(STATUSES))),
    "ticket.assigned": (*_TICKET, ("queue", _is_str)),
    "ticket.priority_changed": (*_TICKET, ("priority", _one_of(PRIORITIES))),
    "ticket.escalated": _TICKET,
    "ticket.solved": (*_TICKET, ("method", _one_of(METHODS))),
    "ticket.reopened": _TICKET,
    "ticket.closed": _TICKET,
    "survey.csat": (*_TICKET, ("score", _score(1, 5))),
    "survey.nps": (*_TICKET, ("score", _score(0, 10))),
    "selfservice.session": (
        ("customer_id", _is_str),
        ("screens", _is_int),
        ("clicks", _is_int),
        ("succeeded", _is_bool),
    ),
    "agent.shift": (("agent_id", _is_str), ("state", _one_of(frozenset({"on", "off"})))),
}


def invalid_reason(event: Any) -> str | None:
    """Why `event` breaks the event contract, or None if it is a valid help-desk event."""
    if not isinstance(event, dict):
        return "not a JSON object"
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        return "bad event_id"
    typ = event.get("type")
    required = REQUIRED.get(typ) if isinstance(typ, str) else None
    if required is None:
        return "unknown type"
    if not isinstance(event.get("occurred_at"), str):
        return "bad occurred_at"
    if event.get("schema_version", 1) != 1:
        return "unsupported schema_version"
    for name, check in required:
        if not check(event.get(name)):
            return f"bad {name}"
    return None


class HelpdeskEventDeserializer(JSONDeserializer):
    """JSON plus the contract check: a broken message raises SerializationError, which
    Quix hands to on_consumer_error before any processing step sees it."""

    def __call__(self, value: bytes, ctx: Any) -> Any:
        event = super().__call__(value, ctx)
        reason = invalid_reason(event)
        if reason is not None:
            raise SerializationError(reason)
        return event


def occurred_at_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """Event time for Quix (windows, state TTL): `occurred_at` as epoch ms. Integer
    arithmetic, so a .123 second never becomes ...122.9999 ms."""
    if not isinstance(value, dict):  # a tombstone (no value) reaches here as None
        raise SerializationError("no value")
    try:
        moment = datetime.fromisoformat(value["occurred_at"])
    except ValueError as exc:
        raise SerializationError(f"bad occurred_at: {exc}") from exc
    if moment.tzinfo is None:
        raise SerializationError("occurred_at without an offset")
    return (moment - _EPOCH) // _ONE_MS


# --- the first-response sketch -----------------------------------------------------


class QuantileSketch(Aggregator):
    """p50/p90/p99 of a column per window, from a DDSketch with 1 % relative error.

    Window state is stored as JSON in RocksDB, and a DDSketch object is not JSON, so
    the state is the sketch's content: bin index (ddsketch's logarithmic mapping, as a
    string: JSON object keys are strings) -> count. It costs one small dict per window
    instead of every value.

    Quix calls `result()` on every update of a window, not only when it closes (even
    with `.final()`, which then drops the result), so it reads the quantiles straight
    off the bins, with DDSketch's rank rule (the value of rank floor(q (n - 1))),
    rather than building a DDSketch object each time.
    """

    def __init__(self, column: str, quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)) -> None:
        super().__init__(column)
        self.quantiles = quantiles
        self.mapping = LogarithmicMapping(RELATIVE_ACCURACY)

    @property
    def state_suffix(self) -> str:
        return f"QuantileSketch/{self.column}/{RELATIVE_ACCURACY}"

    def initialize(self) -> dict[str, Any]:
        return {"bins": {}, "zeros": 0}

    def agg(self, old: dict[str, Any], new: Any, timestamp: int) -> dict[str, Any]:
        value = new.get(self.column)
        if value is None:
            return old
        if value <= self.mapping.min_possible:
            old["zeros"] += 1
        else:
            bins = old["bins"]
            key = str(self.mapping.key(value))
            bins[key] = bins.get(key, 0) + 1
        return old

    def result(self, value: dict[str, Any]) -> dict[str, float | None]:
        zeros = value["zeros"]
        bins = sorted((int(key), count) for key, count in value["bins"].items())
        total = zeros + sum(count for _, count in bins)
        out: dict[str, float | None] = {}
        for q in self.quantiles:
            name = f"p{round(q * 100)}"
            rank = q * (total - 1)
            if not total:
                out[name] = None
            elif rank < zeros:
                out[name] = 0.0
            else:
                running = zeros
                for key, count in bins:
                    running += count
                    if running > rank:  # reached by the last bin at the latest
                        out[name] = self.mapping.value(key)
                        break
        return out


# --- per-ticket state --------------------------------------------------------------

_STATUS_OF = {
    "ticket.status_changed": None,  # the event's own `status`
    "ticket.solved": "solved",
    "ticket.closed": "closed",
    "ticket.reopened": "open",
}
_INACTIVE = frozenset({"solved", "closed"})


class Progress:
    """What the run has done so far, and the stop rule of the benchmark contract."""

    def __init__(self, input_topics: list[str], expected: int) -> None:
        self.input_topics = frozenset(input_topics)
        self.expected = expected
        self.app: Application | None = None
        self.consumed = 0  # input messages, whatever became of them
        self.malformed = 0
        self.duplicates = 0
        self.processing_errors = 0
        self.late = 0
        self.outputs = 0
        self.routed = {"by_queue": 0, "all": 0}  # rows produced to each repartition topic
        self.arrived = {"by_queue": 0, "all": 0}  # ... and consumed back from it
        self.first_wall_ms: int | None = None
        self.input_done_wall_ms: int | None = None
        self.last_wall_ms: int | None = None
        self.rss_bytes = 0

    def route(self, name: str) -> Callable[[Any], None]:
        def count(_value: Any) -> None:
            self.routed[name] += 1

        return count

    def arrive(self, name: str) -> Callable[[Any], None]:
        def count(_value: Any) -> None:
            self.arrived[name] += 1

        return count

    def output(self, _value: Any) -> None:
        self.outputs += 1

    @property
    def input_complete(self) -> bool:
        return self.consumed >= self.expected

    def input_message(self) -> None:
        if self.input_complete:
            return  # past N: consumed but not counted (see ticket_step)
        self.consumed += 1
        if self.consumed == 1:
            self.first_wall_ms = time.time_ns() // 1_000_000
        if self.consumed == self.expected:
            self.input_done_wall_ms = time.time_ns() // 1_000_000

    def maybe_stop(self) -> None:
        """Stop once N input messages are in and their repartitioned rows are processed
        too: only then have all N messages reached every KPI."""
        if self.last_wall_ms is not None or self.consumed < self.expected:
            return
        if self.routed != self.arrived:
            return
        self.last_wall_ms = time.time_ns() // 1_000_000
        self.rss_bytes = current_rss_bytes()
        assert self.app is not None
        self.app.stop()

    # Application callbacks

    def on_message_processed(self, topic: str, partition: int, offset: int) -> None:
        if topic in self.input_topics:
            self.input_message()
        self.maybe_stop()

    def on_consumer_error(self, exc: Exception, message: Any, logger: logging.Logger) -> bool:
        # With a message: it could not be deserialized (or had no usable time). Without
        # one, Kafka itself failed: Quix's default, log and stop.
        if message is None:
            return default_on_consumer_error(exc, message, logger)
        if self.input_complete:
            return True  # past N: left out, like the valid ones
        self.malformed += 1
        if self.malformed <= 5:
            log.warning(
                "skipping a malformed message %s[%s]@%s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                exc,
            )
        if message.topic() in self.input_topics:
            self.input_message()
            self.maybe_stop()
        return True

    def on_processing_error(self, exc: Exception, row: Any, logger: logging.Logger) -> bool:
        self.processing_errors += 1
        if self.processing_errors <= 5:
            log.error(
                "skipping a message whose processing failed %s[%s]@%s",
                row.topic,
                row.partition,
                row.offset,
                exc_info=exc,
            )
        return True

    def on_late(self, value: Any, key: Any, timestamp_ms: int, *_: Any) -> bool:
        self.late += 1
        return False  # counted, not logged per record


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ticket_step(progress: Progress) -> Callable[[Any, Any, int, Any, State], Any]:
    """The per-key stateful step: de-duplication, the ticket's status and queue, and its
    first response. The input topic is keyed by ticket_id (agent shifts by agent_id,
    anonymous self-service sessions by customer_id), so State here is one ticket's.

    Returns a "fact" for the aggregations downstream, or None for a duplicate:
    `ts` (event time), `queue` (the ticket's queue before this event), `delta` (change
    of the active-ticket count, if any), and once per ticket `frt` (first-response
    seconds) with `frt_at` (the reply's time).
    """

    def track(event: dict[str, Any], key: Any, ts: int, headers: Any, state: State) -> Any:
        if progress.input_complete:
            return None  # a message past the N of the run: left out, like the next run's
        rec = state.get("ticket") or {"ids": []}
        ids = rec["ids"]
        if event["event_id"] in ids:
            progress.duplicates += 1
            return None
        ids.append(event["event_id"])
        if len(ids) > MAX_IDS:
            del ids[0]
        if "ticket_id" not in event:
            state.set("ticket", rec, ttl=TICKET_RETENTION)
            return {"ts": ts, "queue": NO_QUEUE}

        fact: dict[str, Any] = {"ts": ts, "queue": rec.get("q", UNKNOWN_QUEUE)}
        was_active = "c" in rec and rec["st"] not in _INACTIVE
        typ = event["type"]
        # Status and queue: the latest in event time wins, so an event that arrives
        # late does not undo a newer one. The creation wins ties (it comes first).
        if typ == "ticket.created":
            if "c" not in rec:
                rec["c"] = ts
                if ts > rec.get("st_ms", -1):
                    rec["st"], rec["st_ms"] = "new", ts
                if ts > rec.get("q_ms", -1):
                    rec["q"], rec["q_ms"] = event["queue"], ts
                fact["queue"] = rec["q"]
        elif typ in _STATUS_OF:
            if ts >= rec.get("st_ms", -1):
                rec["st"], rec["st_ms"] = _STATUS_OF[typ] or event["status"], ts
        elif typ == "ticket.assigned":
            if ts >= rec.get("q_ms", -1):
                rec["q"], rec["q_ms"] = event["queue"], ts
        elif (
            # The first public agent reply: not the customer, an internal note or the
            # automated acknowledgement (author "system"). The earliest one seen wins
            # while no response was emitted; one that turns up later cannot be undone.
            typ == "ticket.replied"
            and event["author"] == "agent"
            and event["public"]
            and ts < rec.get("r", ts + 1)
        ):
            rec["r"] = ts
        if "c" in rec and "r" in rec and not rec.get("frt_done"):
            fact["frt"] = max(0, rec["r"] - rec["c"]) / 1000.0
            fact["frt_at"] = rec["r"]  # counted at the reply, even if the creation came later
            rec["frt_done"] = True
        now_active = "c" in rec and rec["st"] not in _INACTIVE
        if now_active != was_active:
            fact["delta"] = 1 if now_active else -1
        state.set("ticket", rec, ttl=TICKET_RETENTION)
        return fact

    return track


def active_at_end(name: str) -> Callable[[dict[str, Any], State], dict[str, Any]]:
    """Active tickets at a window's end: the running total of the closed windows' sums of
    deltas. Closed windows of a key come out in time order, so this is exact in event
    time, whatever order the partitions were read in. One key ("all") reaches this
    step, so its State holds the one global total, changelogged like any other."""

    def total(window: dict[str, Any], state: State) -> dict[str, Any]:
        active = state.get(name, 0) + window.pop("delta")
        state.set(name, active)
        window["active"] = active
        return window

    return total


# --- the application ---------------------------------------------------------------


def build(args: argparse.Namespace, progress: Progress) -> Application:
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        processing_guarantee="at-least-once",
        on_consumer_error=progress.on_consumer_error,
        on_processing_error=progress.on_processing_error,
        on_message_processed=progress.on_message_processed,
    )
    progress.app = app
    grace_ms = args.grace_ms
    # The help-desk topic gets the KPIs; any other topic named (the harness also passes
    # the orders topic, whose messages count in N) is consumed, counted and dropped.
    helpdesk = next((t for t in args.topic if "helpdesk" in t), args.topic[0])
    for other in args.topic:
        if other != helpdesk:
            app.dataframe(app.topic(other, value_deserializer="json"))
    events = app.topic(
        helpdesk,
        value_deserializer=HelpdeskEventDeserializer(),
        timestamp_extractor=occurred_at_ms,
    )
    # Results are stamped with their window's start (event time). With CreateTime the
    # broker would reject a window more than an hour in the future
    # (message.timestamp.after.max.ms) and delete one older than retention.ms at its
    # next check; with LogAppendTime it stamps them itself.
    results = app.topic(
        f"{args.output_prefix.rstrip('.')}.kpi.windows",
        key_serializer="str",
        value_serializer="json",
        config=TopicConfig(
            num_partitions=1,
            replication_factor=1,
            extra_config={"message.timestamp.type": "LogAppendTime"},
        ),
    )

    facts = app.dataframe(events)
    facts = facts.apply(ticket_step(progress), stateful=True, metadata=True)
    facts = facts.filter(lambda fact: fact is not None)

    def publish(sdf: Any, kpi: str, window: str, dims: Callable[[Any], str]) -> None:
        """Flatten a closed window into a KPI message keyed like the worker's
        (`<kpi>/<window>|<dimensions>|<window_start>`) and produce it."""

        def message(value: dict[str, Any], key: Any, ts: int, headers: Any) -> dict[str, Any]:
            start, end = value.pop("start"), value.pop("end")
            flat = {"kpi": kpi, "window": window, "dimensions": dims(key)}
            flat.update(start=start, end=end, is_final=True)
            for name, result in value.items():
                if isinstance(result, dict):
                    flat.update((f"{k}_seconds", v) for k, v in result.items())
                else:
                    flat[name] = result
            return flat

        sdf = sdf.apply(message, metadata=True)
        sdf = sdf.update(progress.output)
        sdf.to_topic(results, key=lambda m: f"{kpi}/{window}|{m['dimensions']}|{m['start']}")

    # A window is per message key, so a per-queue (or global) window needs the rows
    # re-keyed: group_by produces them to a repartition topic and consumes them back.
    # That topic copies the input topic's retention, and Quix forwards each row's
    # timestamp to it: replaying events older than the retention (or stamped more than
    # an hour ahead) would have the broker delete (reject) them. So the rows travel with
    # the wall clock as Kafka timestamp and get their event time back (`ts`) after it.
    def regroup(sdf: Any, name: str, key: Callable[[Any], Any]) -> Any:
        sdf = sdf.update(progress.route(name))
        sdf = sdf.set_timestamp(lambda *_: time.time_ns() // 1_000_000)
        sdf = sdf.group_by(key, name=name)
        sdf = sdf.set_timestamp(lambda fact, *_: fact["ts"])
        return sdf.update(progress.arrive(name))

    # 1. Events per queue and window.
    by_queue = regroup(facts, "by_queue", lambda fact: fact["queue"])
    for window, size in (("1m", MINUTE_MS), ("1h", HOUR_MS)):
        counts = (
            by_queue.tumbling_window(
                size, grace_ms=grace_ms, name=f"events_{window}", on_late=progress.on_late
            )
            .agg(count=Count())
            .final()
        )
        publish(counts, "events", window, lambda queue: f"queue={queue}")

    # 2 and 3 need one global key; only the rows that carry one of them travel.
    sparse = facts.filter(lambda fact: "delta" in fact or "frt" in fact)
    global_rows = regroup(sparse, "all", lambda _: "all")

    deltas = global_rows.filter(lambda fact: "delta" in fact)
    for window, size in (("1m", MINUTE_MS), ("1h", HOUR_MS)):
        sums = (
            deltas.tumbling_window(
                size, grace_ms=grace_ms, name=f"active_{window}", on_late=progress.on_late
            )
            .agg(delta=Sum("delta"))
            .final()
        )
        at_end = sums.apply(active_at_end(f"active_{window}"), stateful=True)
        publish(at_end, "tickets_active", window, lambda _: "")

    responses = global_rows.filter(lambda fact: "frt" in fact)
    responses = responses.set_timestamp(lambda fact, *_: fact["frt_at"])
    first_response = (
        responses.tumbling_window(
            HOUR_MS, grace_ms=grace_ms, name="first_response_1h", on_late=progress.on_late
        )
        .agg(count=Count(), sum_seconds=Sum("frt"), percentiles=QuantileSketch("frt"))
        .final()
    )
    publish(first_response, "first_response_time", "1h", lambda _: "")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument(
        "--topic",
        action="append",
        required=True,
        help="the help-desk topic (the one whose name has 'helpdesk', else the first);"
        " repeat to consume more topics, which are counted and dropped",
    )
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument(
        "--output-prefix", default="quix", help="results go to <prefix>.kpi.windows"
    )
    parser.add_argument(
        "--grace-ms",
        type=int,
        default=GRACE_MS,
        help="how long a window waits for out-of-order events (see README.md)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )

    progress = Progress(args.topic, args.expected)
    app = build(args, progress)
    app.run()
    if progress.last_wall_ms is None:
        log.error("stopped after %d of %d messages", progress.consumed, args.expected)
        return 1
    assert progress.first_wall_ms is not None
    assert progress.input_done_wall_ms is not None
    span_s = max(progress.last_wall_ms - progress.first_wall_ms, 1) / 1000
    input_s = max(progress.input_done_wall_ms - progress.first_wall_ms, 1) / 1000
    log.info(
        "done: %d messages in %.1f s, %.0f/s (%.0f/s counting only the input topics, "
        "without the %.1f s the repartition topics took to drain); %d malformed, "
        "%d duplicates, %d processing errors, %d window updates dropped as late, "
        "%d KPI messages; repartition rows %s",
        progress.consumed,
        span_s,
        progress.consumed / span_s,
        progress.consumed / input_s,
        span_s - input_s,
        progress.malformed,
        progress.duplicates,
        progress.processing_errors,
        progress.late,
        progress.outputs,
        progress.arrived,
    )
    result = {
        "processed": progress.consumed,
        "first_wall_ms": progress.first_wall_ms,
        "last_wall_ms": progress.last_wall_ms,
        "rss_bytes": progress.rss_bytes,
    }
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
