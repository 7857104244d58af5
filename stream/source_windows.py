"""The event-time windows of one input topic's partitions owned by this worker, and the
marks that tell the merge how far each partition has got.

One instance per input topic (help-desk events, order events). It closes the windows
once a tick, turns them into the messages of the window-partials topic (partials first,
then each partition's marks), and decides when a partition's final mark may be
persisted: only once the partials that made those windows final are in Kafka (a crash
in between would otherwise leave those windows without them for good). What goes into
the windows is the caller's business (runtime.py for tickets, orders.py for orders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stream.kpi.partition import PartitionKpis
from stream.settings import Settings


class SourceWindows:
    def __init__(
        self,
        settings: Settings,
        source: str,
        summary_prefix: str = "",
        sizes_ms: tuple[int, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.sizes_ms = sizes_ms if sizes_ms is not None else settings.window_sizes_ms
        # Tags this source's messages on the partials topic ("" leaves them untagged:
        # the help-desk messages, as they were before orders had windows).
        self.source = source
        self.summary_prefix = summary_prefix
        self.partitions: dict[int, PartitionKpis] = {}
        self._reported_marks: dict[int, tuple[int, int]] = {}
        self._summary_written: dict[int, int | None] = {}
        # Per partition: the final-through mark of the last tick whose partials have been
        # delivered (the one the summary may persist), and the one on its way.
        self._delivered_final: dict[int, int] = {}
        self._sending_final: dict[int, int] = {}

    def summary_key(self, partition: int) -> str:
        return f"{self.summary_prefix}{partition}|summary"

    def new_partition(self) -> PartitionKpis:
        return PartitionKpis(
            window_sizes_ms=self.sizes_ms,
            grace_ms=self.settings.grace_ms,
            relative_accuracy=self.settings.sketch_relative_accuracy,
        )

    def partition(self, number: int) -> PartitionKpis:
        kpis = self.partitions.get(number)
        if kpis is None:
            kpis = self.partitions[number] = self.new_partition()
        return kpis

    # --- restart and rebalance ------------------------------------------------------
    def fresh(
        self, wanted: Iterable[int], state: Iterable[tuple[str, Any]]
    ) -> dict[int, PartitionKpis]:
        """New partitions for `wanted`, with their persisted marks: to be rebuilt."""
        rebuilt = {p: self.new_partition() for p in wanted}
        prefix = self.summary_prefix
        for key, value in state:
            if value is None or not key.startswith(prefix) or not key.endswith("|summary"):
                continue
            part = key[len(prefix) : -len("|summary")]
            if part.isdigit() and int(part) in rebuilt:
                rebuilt[int(part)].load_summary(value)
        return rebuilt

    def install(self, rebuilt: dict[int, PartitionKpis]) -> None:
        """Serve the rebuilt partitions (their windows filled by the caller)."""
        self._delivered_final = {
            p: k.final_through_ms for p, k in rebuilt.items() if k.final_through_ms is not None
        }
        self._sending_final = dict(self._delivered_final)
        self.partitions = rebuilt
        self._reported_marks = {p: m for p, m in self._reported_marks.items() if p in rebuilt}

    # --- per event --------------------------------------------------------------------
    def add_summary_write(self, partition: int, writes: dict[str, Any]) -> None:
        """Into `writes` (kpi_state key -> value): the marks to persist, if they changed."""
        summary = self.summary_write(partition)
        if summary is not None:
            writes[summary[0]] = summary[1]

    def summary_write(self, partition: int) -> tuple[str, dict[str, Any]] | None:
        """The marks to persist now (inside stream iteration), if they changed."""
        kpis = self.partition(partition)
        if (
            partition not in self._sending_final
            and partition not in self._delivered_final
            and kpis.final_through_ms is not None
        ):
            # Its first mark, before any tick: no window has been made final yet.
            self._delivered_final[partition] = kpis.final_through_ms
        delivered = self._delivered_final.get(partition)
        if delivered is None or delivered == self._summary_written.get(partition):
            return None
        # Only a mark whose final partials Kafka has. A restart with an older mark
        # re-sends final windows, which the merge ignores.
        self._summary_written[partition] = delivered
        return self.summary_key(partition), {**kpis.summary_dict(), "final_through_ms": delivered}

    # --- per tick -----------------------------------------------------------------------
    def close(
        self,
        wall: int,
        before_close: Callable[[int, PartitionKpis, int | None], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Close windows on every owned partition; partials first, then the marks.

        `before_close(partition, kpis, event_mark)` runs first on each partition (the
        agents' time on shift goes into the windows there)."""
        clock = wall if self.settings.live else None
        messages: list[dict[str, Any]] = []
        for number, kpis in self.partitions.items():
            if before_close is not None:
                before_close(number, kpis, kpis.event_mark_ms(clock))
            partials = kpis.close(number, clock)
            if kpis.final_through_ms is not None:
                self._sending_final[number] = kpis.final_through_ms
            messages += partials
            watermark, event_mark = kpis.watermark_ms(clock), kpis.event_mark_ms(clock)
            if watermark is None or event_mark is None or kpis.final_through_ms is None:
                # No window can be sent yet: marks now would let the merge close windows
                # this partition has not sent.
                continue
            marks = (event_mark, watermark)
            # Marks after partials always: the merge emits what changed on them.
            if partials or marks != self._reported_marks.get(number):
                self._reported_marks[number] = marks
                messages.append(
                    {"partition": number, "event_ms": event_mark, "watermark": watermark}
                )
        if self.source:
            for message in messages:
                message["source"] = self.source
        return messages

    def delivered(self) -> None:
        """The messages of the last tick are in Kafka: their marks may be persisted."""
        self._delivered_final.update(self._sending_final)
