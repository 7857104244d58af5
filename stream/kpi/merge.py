"""Merging per-partition window partials into the messages of the KPI topic.

Each input partition sends, per window and dimension set, a *partial* (its counts,
sketches and active-ticket counts of that window) when the window closes in its event
time, again when a late event changes it, and a last time (`final`) when its watermark
passes the window's end; after its partials it sends its *marks* (event time and
watermark). Only the partitions know when they have nothing left to send, so:

- a window is *closed* when every partition's event time has passed its end: its
  messages go out with revision 0, `is_final: false`;
- each later change of a merged value is sent again with `revision` + 1;
- it is *final* when every partition's watermark has passed its end: each message goes
  out a last time with `is_final: true`, and the window's partials are dropped.

A partial sent twice (after a restart) replaces the first; one for a window that is
already final is ignored (counted by the caller). Pure apart from the mutable mapping
it is given: the merge agent hands in its changelogged table (one partition, so one
owner at a time), tests a dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.kpi.catalogue import (
    KpiValue,
    Merged,
    carried_values,
    fill_change,
    message_body,
    message_key,
    window_values,
)
from stream.kpi.partition import parse_dims_key
from stream.kpi.sketch import QuantileSketch
from stream.kpi.windows import format_duration_ms, window_end_ms

WindowId = tuple[int, int]  # (size_ms, start_ms)
Output = tuple[str, dict[str, Any] | None]  # (key, message); None is a tombstone


def _digest(values: dict[str, Any]) -> str:
    return hashlib.blake2b(
        orjson.dumps(values, option=orjson.OPT_SORT_KEYS), digest_size=8
    ).hexdigest()


# A window-partials message carries a tick's steps (partials, then marks) as one JSON
# array, up to about this many bytes: one Kafka record, one merge step and one write of
# the merge's state per batch instead of per partial (measured: 30,700 partials and
# 16,000 merge-state writes for 100,000 input events, one record each).
STEPS_PER_MESSAGE_BYTES = 256 * 1024


def encode_steps(
    steps: Iterable[dict[str, Any]], max_bytes: int = STEPS_PER_MESSAGE_BYTES
) -> list[bytes]:
    """The values of the window-partials messages for `steps`, in order: each a JSON
    array of consecutive steps, a new one once `max_bytes` would be passed (a step
    larger than that goes alone)."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for step in steps:
        body = orjson.dumps(step)
        if chunk and size + len(body) + 1 > max_bytes:
            out.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 0
        chunk.append(body)
        size += len(body) + 1
    if chunk:
        out.append(b"[" + b",".join(chunk) + b"]")
    return out


def decode_steps(value: bytes) -> list[dict[str, Any]]:
    """The steps of one window-partials message: an array of them, or one step alone
    (what the worker wrote before the arrays, and the indicators' customer counts)."""
    decoded = orjson.loads(value)
    return decoded if isinstance(decoded, list) else [decoded]


def partial_key(size_ms: int, start_ms: int, partition: int, dims: str) -> str:
    return f"p|{size_ms}|{start_ms}|{partition}|{dims}"


def record_key(size_ms: int, start_ms: int) -> str:
    return f"e|{size_ms}|{start_ms}"


class StagedState(MutableMapping[str, Any]):
    """The merge table seen through a layer of writes not yet made.

    The merge's state must never run ahead of its output: if "window W is final" reached
    the changelog while W's KPI messages were still in a crashed producer's buffer, the
    re-delivered partials would be ignored and W's final messages lost. So the merge
    agent stages the writes of a batch, sends its KPI messages, waits until Kafka has
    them, and only then writes the staged state (`commit`). A crash in between repeats
    the batch, and with it the (compacted, identical) messages.
    """

    _DELETED = object()

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.staged: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.staged:
            value = self.staged[key]
            if value is self._DELETED:
                raise KeyError(key)
            return value
        return self.table[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.staged[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.staged[key] = self._DELETED

    def __contains__(self, key: object) -> bool:
        if key in self.staged:
            return self.staged[key] is not self._DELETED
        return key in self.table

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for key, value in self.staged.items():
            seen.add(key)
            if value is not self._DELETED:
                yield key
        yield from (k for k in self.table if k not in seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def commit(self) -> None:
        """Write the staged changes to the table (inside stream iteration)."""
        for key, value in self.staged.items():
            if value is self._DELETED:
                if key in self.table:
                    del self.table[key]
            else:
                self.table[key] = value
        self.staged.clear()


class PrefixedState(MutableMapping[str, Any]):
    """The keys of a mapping that start with `prefix`, without it: one merge table holds
    the state of several mergers (help-desk windows, order windows) side by side."""

    def __init__(self, table: MutableMapping[str, Any], prefix: str) -> None:
        self.table = table
        self.prefix = prefix

    def __getitem__(self, key: str) -> Any:
        return self.table[self.prefix + key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[self.prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[self.prefix + key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.prefix + key in self.table

    def __iter__(self) -> Iterator[str]:
        n = len(self.prefix)
        return (k[n:] for k in self.table if k.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class WindowMerger:
    partitions: int
    fmt: Callable[[int], str]  # epoch ms -> RFC 3339 text
    # The KPI values of one window from its merged dimension sets (catalogue.py).
    # (merged dimension sets, size_ms, start_ms) -> the window's KPI values.
    values: Callable[[dict[tuple[str, str], Merged], int, int], list[KpiValue]] = (
        lambda merged, _size, _start: window_values(merged)
    )
    # What of a KPI value the next window's message needs (None: nothing), and how the
    # change against the previous window is filled in (CSAT change, H8 growth).
    carry: Callable[[KpiValue], dict[str, Any] | None] = carried_values
    change: Callable[[KpiValue, dict[str, Any] | None], None] = fill_change
    # In memory, rebuilt from the table by `load`: which partials each window has.
    index: dict[WindowId, set[str]] = field(default_factory=dict)
    dirty: set[WindowId] = field(default_factory=set)
    carried: dict[int, set[str]] = field(default_factory=dict)  # size -> its "a|" keys
    stale_partials: int = 0

    def load(self, keys: Iterable[str]) -> None:
        self.index.clear()
        self.carried.clear()
        for key in keys:
            if key.startswith("a|"):
                self.carried.setdefault(int(key.split("|")[1]), set()).add(key)
            if key.startswith("p|"):
                _, size, start, _rest = key.split("|", 3)
                self.index.setdefault((int(size), int(start)), set()).add(key)
        self.dirty = set(self.index)

    def marks(self, state: MutableMapping[str, Any]) -> tuple[int | None, int | None]:
        """(min event time, min watermark) over every partition; None until all reported."""
        marks = [state.get(f"mark|{p}") for p in range(self.partitions)]
        known = [m for m in marks if m is not None]
        if len(known) < len(marks):
            return None, None
        return min(int(m[0]) for m in known), min(int(m[1]) for m in known)

    def step(
        self, msg: dict[str, Any], state: MutableMapping[str, Any], emitted_at_ms: int
    ) -> list[Output]:
        """Apply one partial or marks message; return the KPI messages now due."""
        partition = int(msg["partition"])
        candidates: Iterable[WindowId]
        if "reset_from_ms" in msg:
            self._reset(partition, int(msg["reset_from_ms"]), state)
            return []
        if "watermark" in msg:
            key = f"mark|{partition}"
            old = state.get(key) or [-(2**62), -(2**62)]
            new = [max(int(old[0]), int(msg["event_ms"])), max(int(old[1]), int(msg["watermark"]))]
            if new != list(old):
                state[key] = new
                candidates = sorted(self.index)  # windows may have closed or become final
            else:
                candidates = sorted(self.dirty)
        else:
            wid = (int(msg["size_ms"]), int(msg["start_ms"]))
            done = state.get(f"done|{wid[0]}")
            if done is not None and wid[1] <= int(done):
                self.stale_partials += 1
                return []
            key = partial_key(*wid, partition, msg["dims"])
            state[key] = {
                k: msg[k] for k in ("counts", "sketches", "active_end", "active_delta") if k in msg
            }
            self.index.setdefault(wid, set()).add(key)
            self.dirty.add(wid)
            self.carried.setdefault(wid[0], set()).add(f"a|{wid[0]}|{partition}|{msg['dims']}")
            if self._carry(wid, partition, msg["dims"], msg.get("active_end") or {}, state):
                # Later windows of this size that did not hear from this partition show
                # its active counts from here: they change too.
                self.dirty.update(w for w in self.index if w[0] == wid[0] and w[1] > wid[1])
            # Emitted on the marks that follow a partition's partials: once per tick,
            # not once per dimension set.
            return []
        return self._emit_due(candidates, state, emitted_at_ms)

    def _emit_due(
        self, candidates: Iterable[WindowId], state: MutableMapping[str, Any], emitted_at_ms: int
    ) -> list[Output]:
        event_min, watermark_min = self.marks(state)
        if event_min is None or watermark_min is None:
            return []
        out: list[Output] = []
        for wid in sorted(candidates, key=lambda w: (w[1], w[0])):
            size, start = wid
            end = start + size
            if event_min < end:
                continue
            final = watermark_min >= end
            if not final and wid not in self.dirty:
                continue
            out += self._emit(wid, state, final, emitted_at_ms)
            self.dirty.discard(wid)
            if final:
                for key in self.index.pop(wid, ()):
                    if key in state:
                        del state[key]
                state[f"done|{size}"] = max(start, int(state.get(f"done|{size}") or start))
                self._prune_carried(size, start, state)
                older = record_key(size, start - 2 * size)
                if older in state:
                    del state[older]
        return out

    def _reset(self, partition: int, from_ms: int, state: MutableMapping[str, Any]) -> None:
        """A partition was rebuilt: forget what it sent for windows that are not final
        (ending after `from_ms`); it sends them all again.

        Its marks go back to `from_ms` too: the rebuilt partition may be behind the
        marks it reported before the crash (its final mark is persisted a little late),
        and with those marks the merge would close and finalize the windows it just
        forgot before the partition has sent them again. Its next marks move them on."""
        state[f"mark|{partition}"] = [from_ms, from_ms]
        for wid, keys in self.index.items():
            if wid[0] + wid[1] <= from_ms:
                continue
            for key in [k for k in keys if int(k.split("|", 4)[3]) == partition]:
                keys.discard(key)
                if key in state:
                    del state[key]
            self.dirty.add(wid)
        for size, keys in self.carried.items():
            # Windows the merge has made final keep what they were sent: the partition
            # may re-send them (its marks were persisted a little earlier), but those
            # partials are ignored as stale.
            done = state.get(f"done|{size}")
            kept_through = max(from_ms - size, int(done) if done is not None else -(2**62))
            for key in keys:
                if int(key.split("|", 3)[2]) != partition or key not in state:
                    continue
                state[key] = [e for e in state[key] if int(e[0]) <= kept_through]

    @staticmethod
    def _carry(
        wid: WindowId,
        partition: int,
        dims: str,
        active_end: dict[str, float],
        state: MutableMapping[str, Any],
    ) -> bool:
        """Remember a partition's active counts of a dimension set at a window's end.

        A partition sends a window only for the dimension sets that changed in it; in a
        window where they did not, its counts are those of the last window it sent:
        [[start, counts], ...] per size, partition and dimension set, oldest first.
        Returns whether they changed."""
        key = f"a|{wid[0]}|{partition}|{dims}"
        stored = state.get(key) or []
        before = next((e[1] for e in stored if int(e[0]) == wid[1]), None)
        entries = [e for e in stored if int(e[0]) != wid[1]]
        entries.append([wid[1], active_end])
        entries.sort(key=lambda e: int(e[0]))
        state[key] = entries
        return bool(before != active_end)

    @staticmethod
    def _carried(
        size: int, start: int, partition: int, dims: str, state: MutableMapping[str, Any]
    ) -> dict[str, float]:
        """A partition's active counts of a dimension set at the end of a window it did
        not send: those of the latest window before it that it sent."""
        latest: dict[str, float] = {}
        for entry_start, counts in state.get(f"a|{size}|{partition}|{dims}") or []:
            if int(entry_start) >= start:
                break
            latest = counts
        return latest

    def _prune_carried(self, size: int, start: int, state: MutableMapping[str, Any]) -> None:
        """Window `start` is final: of the entries up to it, only the latest is needed."""
        for key in self.carried.get(size, ()):
            entries = state.get(key) or []
            older = [e for e in entries if int(e[0]) <= start]
            if len(older) > 1:
                state[key] = [older[-1], *(e for e in entries if int(e[0]) > start)]

    def _merged(
        self, wid: WindowId, state: MutableMapping[str, Any]
    ) -> dict[tuple[str, str], Merged]:
        merged: dict[tuple[str, str], Merged] = {}
        sent: dict[str, set[int]] = {}  # dimension set -> partitions that sent it
        # Sorted: the same partials always add up in the same order, to the same floats.
        for key in sorted(self.index.get(wid, ())):
            part = state.get(key)
            if part is None:
                continue
            _, _, _, partition_text, dims_text = key.split("|", 4)
            dims = parse_dims_key(dims_text)
            piece = Merged(
                counts=dict(part.get("counts", {})),
                sketches={
                    n: QuantileSketch.from_dict(s) for n, s in part.get("sketches", {}).items()
                },
                active_end=dict(part.get("active_end", {})),
                active_delta=dict(part.get("active_delta", {})),
            )
            if dims in merged:
                merged[dims].merge(piece)
            else:
                merged[dims] = piece
            sent.setdefault(dims_text, set()).add(int(partition_text))
        size, start = wid
        for dims_text, partitions in sent.items():
            for partition in range(self.partitions):
                if partition not in partitions:
                    carried = self._carried(size, start, partition, dims_text, state)
                    target = merged[parse_dims_key(dims_text)]
                    for status, n in carried.items():
                        target.active_end[status] = target.active_end.get(status, 0) + n
        return merged

    def _emit(
        self, wid: WindowId, state: MutableMapping[str, Any], final: bool, emitted_at_ms: int
    ) -> list[Output]:
        size, start = wid
        record = dict(state.get(record_key(size, start)) or {"m": {}, "prev": {}})
        emitted: dict[str, list[Any]] = dict(record["m"])
        previous = state.get(record_key(size, start - size)) or {}
        previous_carried: dict[str, dict[str, Any]] = previous.get("prev", {})
        carried: dict[str, dict[str, Any]] = {}
        out: list[Output] = []
        seen: set[str] = set()
        stamp = self.fmt(emitted_at_ms)
        start_text = self.fmt(start)
        end_text = self.fmt(window_end_ms(start, size))
        window_text = format_duration_ms(size)
        values = self.values(self._merged(wid, state), size, start)
        # The values of a dimension set share its dims object: spelled once (ids are
        # unique while `values` holds them).
        texts: dict[int, str] = {}
        for value in values:
            dims_text = texts.get(id(value.dims))
            if dims_text is None:
                dims_text = texts[id(value.dims)] = value.dims_text
            name = f"{value.kpi}|{dims_text}"
            kept = self.carry(value)
            if kept is not None:
                carried[name] = kept
                self.change(value, previous_carried.get(name))
            key = message_key(value.kpi, size, start_text, dims_text)  # message()'s key
            seen.add(key)
            digest = _digest(value.values)
            old = emitted.get(key)
            if old is not None and old[1] == digest and (old[2] or not final):
                continue  # nothing new to say
            # Only a message that goes out is written (message()'s body).
            revision = 0 if old is None else int(old[0]) + 1
            body = message_body(value, window_text, start_text, end_text, revision, final)
            body["emitted_at"] = stamp
            body["schema_version"] = 1
            emitted[key] = [revision, digest, final]
            out.append((key, body))
        for key, old in emitted.items():
            if key not in seen and old[1] is not None:
                # A value that a correction took away entirely: delete it from the topic.
                # Its revision is kept, so a value that comes back goes on counting.
                emitted[key] = [old[0], None, final]
                out.append((key, None))
        state[record_key(size, start)] = {"m": emitted, "prev": carried}
        return out
