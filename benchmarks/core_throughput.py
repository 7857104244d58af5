"""How fast the worker's per-message path runs, without Kafka: decode, dedupe, the ticket
or order derivation, windows, SLA clocks or order timers, partials and the merge, on
simulated help-desk or order traffic.

    .venv/bin/python benchmarks/core_throughput.py [--topic helpdesk|orders]
        [--events 200000] [--partitions 3]

Prints events/s, per-message latency percentiles, the state it ends with and the
process's peak RSS. The Faust worker adds the table changelog writes and the consumer
on top of this (see benchmarks/README.md for the figures with a broker).
"""

from __future__ import annotations

import argparse
import resource
import time
import zlib
from typing import Any

from prometheus_client import CollectorRegistry

from stream.local.simulator import SimConfig, simulate
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from stream.worker import tune_garbage_collector

T0 = 1_795_478_400_000  # 2026-11-24T00:00:00Z


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", choices=("helpdesk", "orders"), default="helpdesk")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0, help="simulated events/s")
    args = parser.parse_args()

    config = SimConfig.for_rate(
        args.rate,
        seed=7,
        start_ms=T0,
        time_scale=0.05,
        duplicate_share=0.01,
        malformed_share=0.001,
        late_share=0.05,
        late_max_ms=5 * 60_000,
    )
    messages = []
    for m in simulate(config):
        if m.topic == args.topic:
            messages.append(m)
            if len(messages) >= args.events:
                break
    settings = Settings(
        live=False, partitions=args.partitions, ticket_retention="7d", max_future="off"
    )
    runtime = WorkerRuntime(settings, CollectorRegistry())
    state: dict[str, Any] = {}  # the tickets or the orders
    scopes: dict[str, Any] = {}
    merge_state: dict[str, Any] = {}
    latencies: list[int] = []
    kpi_messages = 0
    if args.topic == "helpdesk":

        def process(value: bytes | None, partition: int) -> None:
            runtime.process_helpdesk(value, partition, state, scopes, now_ms=0)

        def tick() -> list[dict[str, Any]]:
            return runtime.tick(now_ms=0, tickets=state)
    else:

        def process(value: bytes | None, partition: int) -> None:
            runtime.process_order(value, partition, state, now_ms=0)

        def tick() -> list[dict[str, Any]]:
            return runtime.tick(now_ms=0, orders=state)

    # The collector as the worker sets it (stream/worker.py): with Python's default, the
    # full collections that walk this process's state took about a third of its time,
    # which the worker does not pay.
    tune_garbage_collector()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, m in enumerate(messages):
        partition = zlib.crc32(m.key or b"") % args.partitions
        t = time.perf_counter_ns()
        process(m.value, partition)
        latencies.append(time.perf_counter_ns() - t)
        if i % 2000 == 1999:  # a tick, as the worker's 1 s timer would
            for partial in tick():
                kpi_messages += len(runtime.merge_step(partial, merge_state, now_ms=0))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    latencies.sort()
    span_h = (messages[-1].occurred_at_ms - messages[0].occurred_at_ms) / 3_600_000

    def pct(q: float) -> float:
        return latencies[int(q * (len(latencies) - 1))] / 1000

    kind = "help-desk" if args.topic == "helpdesk" else "order"
    print(f"messages        {len(messages):,} {kind} messages, {span_h:.1f} h of event time")
    print(f"throughput      {len(messages) / elapsed:,.0f} messages/s ({elapsed:.1f} s)")
    # CPU time too: on a shared machine the wall clock also counts other processes.
    print(f"cpu             {len(messages) / cpu:,.0f} messages per CPU second ({cpu:.1f} s)")
    print(f"latency         p50 {pct(0.5):.0f} us, p99 {pct(0.99):.0f} us, max {pct(1):.0f} us")
    entities = "tickets" if args.topic == "helpdesk" else "orders"
    print(f"state           {len(state):,} {entities}, {len(merge_state):,} merge entries")
    print(f"kpi messages    {kpi_messages:,}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS        {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
