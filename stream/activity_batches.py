"""Customer activities travel to the customer partitions in batches.

Every ticket created, order placed and customer contact is an activity of its customer
(customer_flow.py), sent to the customer-activity topic keyed by customer. One record
per activity cost a produce, a fetch and a pass through Faust's stream per activity
(a third of the input's record count); here the activities bound for one customer
partition are sent as one JSON array, in the order they were added.

A batch goes to the partition Kafka's default partitioner gives its customers' key
(murmur2, as when each was sent on its own), so a customer's state stays where it was.

When they are sent (the agents' wiring, stream/agents.py):
- when a partition's batch is full (`max_items` or `max_bytes`);
- at each tick, before the input partitions' marks: a customer partition's time comes
  from the marks, so every activity older than a mark must be there before it;
- before offsets are committed (stream/durable_flush.py): an input event's activity
  must be in Kafka before its offset is, or a crash would lose it for good.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

MAX_ITEMS = 500
MAX_BYTES = 256 * 1024  # a batch message at most (the topic takes 1 MiB)


def customer_partition(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by this customer."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


class ActivityBatches:
    def __init__(
        self, partitions: int, max_items: int = MAX_ITEMS, max_bytes: int = MAX_BYTES
    ) -> None:
        self.partitions = partitions
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: dict[int, list[bytes]] = {}
        self._bytes: dict[int, int] = {}
        self._returned: list[tuple[int, bytes]] = []  # taken, not sent (see `put_back`)

    def add(self, customer_id: str, value: bytes) -> bool:
        """Queue one activity (an activity message's value); True when a batch is full."""
        partition = customer_partition(customer_id, self.partitions)
        items = self._items.setdefault(partition, [])
        items.append(value)
        size = self._bytes[partition] = self._bytes.get(partition, 2) + len(value) + 1
        return len(items) >= self.max_items or size >= self.max_bytes

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values()) + len(self._returned)

    def take(self) -> list[tuple[int, bytes]]:
        """(partition, value) of every queued batch, oldest activity first; emptied."""
        out = self._returned
        out += [(p, b"[" + b",".join(items) + b"]") for p, items in self._items.items() if items]
        self._returned = []
        self._items.clear()
        self._bytes.clear()
        return out

    def put_back(self, taken: list[tuple[int, bytes]]) -> None:
        """Batches taken whose send failed: first in the next `take`, so that a commit
        after the failure still sends them (or fails, and commits nothing)."""
        self._returned = [*taken, *self._returned]
