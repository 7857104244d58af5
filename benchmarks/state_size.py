"""How much state a ticket, an order and a customer take: a simulated month through the
worker's core (no Kafka), then the tables measured.

    .venv/bin/python benchmarks/state_size.py [--days 30] [--orders-per-hour 20]

Prints, per table, the entries, the mean and p99 of an entry's changelog record (JSON
bytes, what Kafka and RocksDB store) and the Python heap it takes in the memory store
(tracemalloc, the entry's objects alone), and the look-back that bounds customers.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
import zlib
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from stream.local.simulator import SimConfig, simulate
from stream.runtime import WorkerRuntime
from stream.settings import Settings

T0 = 1_456_790_400_000  # 2016-03-01T00:00:00Z
DAY = 86_400_000


def heap_bytes(values: list[Any]) -> float:
    """Mean heap per entry of a copy of `values` (decoded from JSON, as recovery makes them)."""
    raw = [orjson.dumps(v) for v in values]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    copies = [orjson.loads(r) for r in raw]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del copies
    return (after - before) / max(1, len(values))


def describe(name: str, table: dict[str, Any]) -> None:
    values = list(table.values())
    sizes = sorted(len(orjson.dumps(v)) for v in values)
    if not sizes:
        print(f"{name:10s} empty")
        return
    mean = sum(sizes) / len(sizes)
    p99 = sizes[min(len(sizes) - 1, int(0.99 * len(sizes)))]
    print(
        f"{name:10s} {len(sizes):8,d} entries   record mean {mean:7,.0f} B  p99 {p99:7,d} B"
        f"   heap mean {heap_bytes(values):7,.0f} B"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--orders-per-hour", type=float, default=20.0)
    parser.add_argument("--tickets-per-hour", type=float, default=5.0)
    args = parser.parse_args()
    settings = Settings(live=False, partitions=3, windows=("1h", "1d"))
    runtime = WorkerRuntime(settings, CollectorRegistry())
    tickets: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    orders: dict[str, Any] = {}
    customers: dict[str, Any] = {}
    config = SimConfig(
        seed=7,
        start_ms=T0,
        duration_ms=args.days * DAY,
        tickets_per_hour=args.tickets_per_hour,
        orders_per_hour=args.orders_per_hour,
    )
    n = 0
    for message in simulate(config):
        partition = zlib.crc32(message.key or b"") % settings.partitions
        result: Any
        if message.topic == "helpdesk":
            result = runtime.process_helpdesk(message.value, partition, tickets, scopes, 0)
        else:
            result = runtime.process_order(message.value, partition, orders, 0)
        for customer, value in result.activities:
            part = zlib.crc32(customer.encode()) % settings.partitions
            runtime.process_customer(value, part, customers, 0)
        n += 1
        if n % 5000 == 0:
            runtime.tick(0, tickets, orders, customers)
    print(f"{n:,} messages over {args.days} days of event time")
    describe("tickets", tickets)
    describe("orders", orders)
    describe("customers", customers)
    rules = settings.customer_rules()
    kept_days = (rules.lookback_ms + rules.retention_window_ms) / DAY
    print(
        f"a customer's activities are kept {kept_days:.0f} days after its newest activity "
        "(KPI_RETENTION_WINDOW x 3 with the defaults)"
    )


if __name__ == "__main__":
    main()
