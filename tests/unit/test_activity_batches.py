"""Customer activities in batches (stream/activity_batches.py): each to the partition
its customer's key would have gone to alone, in order, within the size bounds; and the
customer side reads a batch as the activities one by one."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream.activity_batches import ActivityBatches, customer_partition
from stream.customer_flow import activity
from stream.runtime import WorkerRuntime
from stream.settings import Settings

customers = st.text(min_size=1, max_size=20)


@given(customers, st.integers(1, 64))
def test_a_customer_goes_where_kafkas_default_partitioner_sends_its_key(
    customer: str, partitions: int
) -> None:
    expected = DefaultPartitioner()(customer.encode(), list(range(partitions)), None)
    assert customer_partition(customer, partitions) == expected


@given(st.lists(st.tuples(customers, st.integers(0, 10**12)), max_size=80))
def test_batches_hold_every_activity_once_in_order_per_partition(
    items: list[tuple[str, int]],
) -> None:
    batches = ActivityBatches(3, max_items=10_000, max_bytes=10**9)
    expected: dict[int, list[Any]] = {}
    for number, (customer, at) in enumerate(items):
        value = activity(customer, f"e{number}", at, "order")
        batches.add(customer, value)
        expected.setdefault(customer_partition(customer, 3), []).append(orjson.loads(value))
    assert len(batches) == len(items)
    got = {partition: orjson.loads(value) for partition, value in batches.take()}
    assert got == expected
    assert batches.take() == []
    assert len(batches) == 0


def test_a_batch_is_full_at_its_item_or_byte_bound() -> None:
    by_items = ActivityBatches(1, max_items=3)
    assert [by_items.add("c", b"{}") for _ in range(3)] == [False, False, True]
    value = activity("c", "e", 0, "order")
    by_bytes = ActivityBatches(1, max_bytes=2 * len(value) + 3)
    assert by_bytes.add("c", value) is False
    assert by_bytes.add("c", value) is True
    [(_, message)] = by_bytes.take()
    assert len(message) == 2 * len(value) + 3  # "[", ",", "]"


def test_the_customer_side_reads_a_batch_as_its_activities_one_by_one() -> None:
    settings = Settings(live=False, partitions=1)
    one_by_one = WorkerRuntime(settings, CollectorRegistry())
    batched = WorkerRuntime(settings, CollectorRegistry())
    values = [
        activity("c-1", "e1", 1_000, "order"),
        activity("c-1", "e2", 2_000, "ticket", complaint=True),
        activity("c-2", "e3", 3_000, "contact"),
        activity("c-1", "e1", 1_000, "order"),  # a repeat: deduplicated by its event id
    ]
    tables_one: dict[str, Any] = {}
    tables_batched: dict[str, Any] = {}
    for value in values:
        assert one_by_one.process_customer(value, 0, tables_one, now_ms=0).malformed is None
    batch = b"[" + b",".join(values) + b"]"
    assert batched.process_customer(batch, 0, tables_batched, now_ms=0).malformed is None
    assert tables_batched == tables_one
    assert set(tables_one) == {"c-1", "c-2"}


def test_a_bad_item_is_named_and_the_others_are_applied() -> None:
    runtime = WorkerRuntime(Settings(live=False, partitions=1), CollectorRegistry())
    table: dict[str, Any] = {}
    batch = b"[" + activity("c-1", "e1", 1_000, "order") + b',{"kind":"order"},7]'
    result = runtime.process_customer(batch, 0, table, now_ms=0)
    assert result.malformed is not None
    assert result.malformed.startswith("item 1: KeyError")
    assert set(table) == {"c-1"}


def test_batches_whose_send_failed_come_first_in_the_next_take() -> None:
    batches = ActivityBatches(1)
    batches.add("c", b"1")
    taken = batches.take()
    batches.add("c", b"2")
    batches.put_back(taken)
    assert len(batches) == 2
    assert batches.take() == [(0, b"[1]"), (0, b"[2]")]
    assert len(batches) == 0
