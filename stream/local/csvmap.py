"""CSV rows -> contract events (EVENTS.md), by a column map written in TOML. Pure: no Kafka.

A help-desk export or an audit log has one row per ticket change; a column map says how
a row becomes **zero or one** event. Reference and a worked example: docs/replay.md.

Map format::

    [csv]                       # optional; the defaults are shown
    delimiter = ","
    encoding = "utf-8-sig"      # utf-8, and a byte-order mark is dropped
    missing = [""]              # cell values that mean "no value", e.g. ["?", ""]
    strip = true                # strip spaces around every cell value first

    [fields]                    # every event; event_id, type and occurred_at are required
    event_id = "{number}-{sys_mod_count}"       # a template: columns in braces
    type = {column = "state", map = {New = "ticket.created", Closed = "ticket.closed"}}
    occurred_at = {column = "updated", format = "%d/%m/%Y %H:%M", timezone = "UTC"}
    ticket_id = "number"                        # a column name
    customer_id = {column = "caller", default = "unknown"}

    [types."ticket.created"]    # extra fields of one type only (override [fields])
    priority = {column = "priority", map = {"1 - Critical" = "urgent"}, default = "normal"}
    channel = {value = "phone"}                 # a constant

    [repeats]                   # optional: audit logs repeat a state on every update
    key = "ticket_id"           # a field of [fields]
    "ticket.created" = "ticket.status_changed"  # or "skip"

A field is one of

* a string without braces: the **column** of that name;
* a string with braces: a **template**, ``"{number}-{sys_mod_count}"`` (``{{`` and ``}}``
  are literal braces); missing if any column in it is missing;
* a number or a boolean: that constant;
* a table with exactly one source, ``column``, ``template`` or ``value`` (a constant),
  and optionally

  - ``map = {raw = mapped, ...}`` and ``default``: the raw value is looked up in ``map``;
    a missing value or one not in ``map`` gives ``default``; with no ``default``, a
    missing value leaves the field out and a value not in ``map`` skips the row;
  - ``default`` alone: the value when the cell is missing;
  - ``format`` (strptime) and ``timezone`` (an IANA name, via zoneinfo): a time, written
    as RFC 3339 in UTC with milliseconds (``2016-02-29T01:23:00.000Z``). ``timezone`` is
    required unless ``format`` has ``%z`` (an offset in the cell wins then): a naive time
    is never produced. A local time that occurs twice (the hour when DST ends) is the
    first of the two (``fold=0``); one that does not exist (the hour skipped when DST
    starts) skips the row;
  - ``as = "int" | "float" | "bool" | "str"``: the cell converted (``bool``: true/false,
    yes/no, 1/0); a cell that does not convert skips the row.

A field whose value is missing (a cell in ``csv.missing``, and no ``default``) is left
out of the event. ``schema_version`` is always 1 and set by the converter.

One row, one decision, in file order:

1. ``fields.type`` gives the event type; missing, not mapped, or not an event type of
   schemas/events: the row is skipped, with that reason.
2. With ``[repeats]``: a row whose type is the type of the previous *converted* row with
   the same ``key`` (an update that changed something else) and that is listed there is
   converted as the type it names instead (using that type's fields), or skipped with
   reason ``repeats: ...``. A repeated "New" row of an audit log is then a status
   change to ``new``, not a second creation; a "Resolved" row after a reopen is a
   solve again.
3. The fields of ``[fields]`` and of ``[types."<type>"]`` (the latter win) are computed.

Skipped rows are never silent: `ConvertStats.skipped` counts them by reason (with the
line and value of the first one), and `ConvertStats.repeats` counts converted repeats.
A map file that is not valid fails in `load_map` with a `MapError` naming the key
(``fields.occurred_at.timezone: unknown time zone 'Europe/Copenhagn'``); a map column
that the CSV header lacks fails when reading starts, naming the key and the column.
Events are not validated against the schemas here: an event that violates them (a
required field left out, say) is sent as it is and the worker dead-letters it.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import io
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream.kpi.timefmt import format_rfc3339_ms
from stream.schema_registry import event_types

__all__ = [
    "ColumnMap",
    "ConvertStats",
    "FieldSpec",
    "MapError",
    "convert_csv",
    "is_csv_path",
    "load_map",
    "parse_map",
    "read_csv_events",
]

Value = str | int | float | bool
Row = Mapping[str, str | None]  # column -> cell, None when missing

_REQUIRED = ("event_id", "type", "occurred_at")
_SOURCES = ("column", "template", "value")
_FIELD_KEYS = (*_SOURCES, "map", "default", "format", "timezone", "as")
_CASTS = ("int", "float", "bool", "str")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_TEMPLATE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class MapError(ValueError):
    """A column map that cannot be used; the message names the key (and the file)."""


class _Skip(Exception):
    """This row becomes no event; `reason` is a short, bounded text, `value` the culprit."""

    def __init__(self, reason: str, value: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


def _quote(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def _parse_template(text: str, where: str) -> tuple[tuple[str, bool], ...]:
    """'{a}-{b}' -> (('a', True), ('-', False), ('b', True)); (text, is_column) pairs."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for match in _TEMPLATE.finditer(text):
        if match.start() > pos:
            parts.append((text[pos : match.start()], False))
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append((token[0], False))
        elif token in ("{", "}"):
            raise MapError(f"{where}: unbalanced {token!r} in template {text!r} (use {{{{ }}}})")
        else:
            name = match.group(1)
            if not name.strip():
                raise MapError(f"{where}: empty column name in template {text!r}")
            parts.append((name, True))
        pos = match.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return tuple(parts)


def _zone(name: object, where: str) -> tzinfo:
    if not isinstance(name, str) or not name:
        raise MapError(f"{where}: must be an IANA time zone name like 'Europe/Copenhagen'")
    if name in ("UTC", "Etc/UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MapError(f"{where}: unknown time zone {name!r}") from None


def _is_value(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one event field is computed from a row (see the module docstring)."""

    where: str  # the map key, e.g. 'types."ticket.created".priority', for messages
    column: str | None = None
    template: tuple[tuple[str, bool], ...] | None = None
    const: Value | None = None
    mapping: Mapping[str, Value] | None = None
    default: Value | None = None
    time_format: str | None = None
    zone: tzinfo | None = None
    cast: str | None = None

    def columns(self) -> frozenset[str]:
        """The CSV columns this field reads."""
        if self.column is not None:
            return frozenset({self.column})
        if self.template is not None:
            return frozenset(text for text, is_column in self.template if is_column)
        return frozenset()

    def evaluate(self, row: Row) -> Value | None:
        """The field's value for `row`, None to leave it out; raises _Skip for the row."""
        if self.const is not None:
            return self.const
        raw: str | None
        if self.column is not None:
            raw = row.get(self.column)
        else:
            pieces: list[str] = []
            for text, is_column in self.template or ():
                cell = row.get(text) if is_column else text
                if cell is None:
                    break
                pieces.append(cell)
            else:
                raw = "".join(pieces)
            if len(pieces) != len(self.template or ()):
                raw = None
        if raw is None:
            return self.default
        if self.mapping is not None:
            mapped = self.mapping.get(raw)
            if mapped is not None:
                return mapped
            if self.default is not None:
                return self.default
            raise _Skip(f"{self.where}: no mapping for {raw[:60]!r}", raw)
        if self.time_format is not None:
            return self._time(raw)
        if self.cast is not None:
            return self._cast(raw)
        return raw

    def _time(self, raw: str) -> str:
        assert self.time_format is not None
        text = _rfc3339(raw, self.time_format, self.zone or UTC)
        if text is None:
            raise _Skip(f"{self.where}: not a time in the format {self.time_format!r}", raw)
        if not text:
            raise _Skip(
                f"{self.where}: a local time that does not exist in {self.zone} (DST gap)", raw
            )
        return text

    def _cast(self, raw: str) -> Value:
        try:
            if self.cast == "int":
                return int(raw)
            if self.cast == "float":
                return float(raw)
        except ValueError:
            article = "an" if self.cast == "int" else "a"
            raise _Skip(f"{self.where}: not {article} {self.cast}", raw) from None
        if self.cast == "bool":
            lowered = raw.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise _Skip(f"{self.where}: not a bool (true/false, yes/no, 1/0)", raw)
        return raw


@functools.lru_cache(maxsize=1 << 16)
def _rfc3339(raw: str, time_format: str, zone: tzinfo) -> str | None:
    """The RFC 3339 UTC text of a local time; None if it does not parse, "" in a DST gap.

    Cached: an export's times repeat (minute resolution), and strptime is the slow part.
    """
    try:
        moment = datetime.strptime(raw, time_format)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)  # fold=0: the first of a repeated hour
        # A wall time in the DST gap does not survive the round trip through UTC.
        back = moment.astimezone(UTC).astimezone(zone)
        if back.replace(tzinfo=None) != moment.replace(tzinfo=None):
            return ""
    return format_rfc3339_ms((moment - _EPOCH) // _MS)


def _field_spec(where: str, spec: object) -> FieldSpec:
    if isinstance(spec, str):
        if "{" in spec or "}" in spec:
            return FieldSpec(where, template=_parse_template(spec, where))
        if not spec:
            raise MapError(f"{where}: an empty column name")
        return FieldSpec(where, column=spec)
    if isinstance(spec, bool | int | float):
        return FieldSpec(where, const=spec)
    if not isinstance(spec, dict):
        raise MapError(
            f"{where}: must be a column name, a template, a number, a boolean or a table "
            f"(got {type(spec).__name__})"
        )
    for key in spec:
        if key not in _FIELD_KEYS:
            raise MapError(f"{where}.{_quote(key)}: unknown key (one of {', '.join(_FIELD_KEYS)})")
    sources = [key for key in _SOURCES if key in spec]
    if len(sources) != 1:
        raise MapError(f"{where}: needs exactly one of column, template, value (got {sources})")
    source = sources[0]
    text = spec[source]
    kwargs: dict[str, Any] = {}
    if source == "value":
        if not _is_value(text):
            raise MapError(f"{where}.value: must be a string, number or boolean")
        extra = [key for key in spec if key != "value"]
        if extra:
            raise MapError(f"{where}.{extra[0]}: not allowed with value (a constant)")
        return FieldSpec(where, const=cast(Value, text))
    if not isinstance(text, str) or not text:
        raise MapError(f"{where}.{source}: must be a non-empty string")
    if source == "column":
        kwargs["column"] = text
    else:
        kwargs["template"] = _parse_template(text, f"{where}.template")
    if "default" in spec:
        if not _is_value(spec["default"]):
            raise MapError(f"{where}.default: must be a string, number or boolean")
        kwargs["default"] = spec["default"]
    if "map" in spec:
        mapping = spec["map"]
        if not isinstance(mapping, dict) or not mapping:
            raise MapError(f"{where}.map: must be a non-empty table of raw value = event value")
        for raw, mapped in mapping.items():
            if not _is_value(mapped):
                raise MapError(f"{where}.map.{_quote(raw)}: must be a string, number or boolean")
        kwargs["mapping"] = dict(mapping)
    if "format" in spec:
        time_format = spec["format"]
        if not isinstance(time_format, str) or "%" not in time_format:
            raise MapError(f"{where}.format: must be a strptime format like '%d/%m/%Y %H:%M'")
        if "map" in spec:
            raise MapError(f"{where}.format: a time cannot have a map as well")
        if "timezone" in spec:
            kwargs["zone"] = _zone(spec["timezone"], f"{where}.timezone")
        elif "%z" not in time_format:
            raise MapError(
                f"{where}.timezone: required for a time without %z in its format "
                '(a time without a zone would be naive); e.g. timezone = "UTC"'
            )
        kwargs["time_format"] = time_format
    elif "timezone" in spec:
        raise MapError(f"{where}.timezone: only for a time, which needs format as well")
    if "as" in spec:
        as_type = spec["as"]
        if as_type not in _CASTS:
            raise MapError(f"{where}.as: must be one of {', '.join(_CASTS)}")
        if "map" in spec or "format" in spec:
            raise MapError(f"{where}.as: not allowed with map or format")
        kwargs["cast"] = as_type
    return FieldSpec(where, **kwargs)


def _fields_table(where: str, table: object, *, common: bool) -> dict[str, FieldSpec]:
    if not isinstance(table, dict):
        raise MapError(f"{where}: must be a table of event field = column, template or table")
    specs: dict[str, FieldSpec] = {}
    for name, spec in table.items():
        key = f"{where}.{_quote(name)}"
        if name == "schema_version":
            raise MapError(f"{key}: set by the converter (always 1)")
        if name == "type" and not common:
            raise MapError(f"{key}: the type comes from fields.type only")
        specs[name] = _field_spec(key, spec)
    return specs


@dataclass(frozen=True)
class ColumnMap:
    """A loaded, validated column map (see the module docstring)."""

    source: str  # where it came from, for messages
    fields: Mapping[str, FieldSpec]  # [fields]
    types: Mapping[str, Mapping[str, FieldSpec]]  # [types."<type>"]
    repeat_key: str | None = None
    repeats: Mapping[str, str] = field(default_factory=dict)  # type -> type or "skip"
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    missing: frozenset[str] = frozenset({""})
    strip: bool = True

    def specs_for(self, event_type: str) -> dict[str, FieldSpec]:
        """The fields of one event type: [fields] overridden by its [types] table."""
        return {**self.fields, **self.types.get(event_type, {})}

    def columns(self) -> frozenset[str]:
        """Every CSV column the map reads."""
        names: set[str] = set()
        for spec in self.fields.values():
            names |= spec.columns()
        for specs in self.types.values():
            for spec in specs.values():
                names |= spec.columns()
        return frozenset(names)


def parse_map(data: Mapping[str, Any], source: str = "column map") -> ColumnMap:
    """Validate a parsed TOML document as a column map; MapError names the bad key."""
    try:
        return _parse_map(data, source)
    except MapError as exc:
        raise MapError(f"{source}: {exc}") from None


def _parse_map(data: Mapping[str, Any], source: str) -> ColumnMap:
    known = event_types()
    for key in data:
        if key not in ("csv", "fields", "types", "repeats"):
            raise MapError(f"{_quote(key)}: unknown key (one of csv, fields, types, repeats)")
    options: dict[str, Any] = {}
    csv_table = data.get("csv", {})
    if not isinstance(csv_table, dict):
        raise MapError("csv: must be a table")
    for key, value in csv_table.items():
        where = f"csv.{_quote(key)}"
        if key == "delimiter":
            if not isinstance(value, str) or len(value) != 1:
                raise MapError(f"{where}: must be one character")
            options["delimiter"] = value
        elif key == "encoding":
            try:
                codecs.lookup(value)
            except (LookupError, TypeError):
                raise MapError(f"{where}: unknown encoding {value!r}") from None
            options["encoding"] = value
        elif key == "missing":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MapError(f'{where}: must be a list of strings, e.g. ["?", ""]')
            options["missing"] = frozenset(value)
        elif key == "strip":
            if not isinstance(value, bool):
                raise MapError(f"{where}: must be true or false")
            options["strip"] = value
        else:
            raise MapError(f"{where}: unknown key (one of delimiter, encoding, missing, strip)")

    if "fields" not in data:
        raise MapError("fields: the table is required (event_id, type, occurred_at, ...)")
    fields = _fields_table("fields", data["fields"], common=True)
    for name in _REQUIRED:
        if name not in fields:
            raise MapError(f"fields.{name}: required")
    type_spec = fields["type"]
    for raw, mapped in (type_spec.mapping or {}).items():
        if mapped not in known:
            raise MapError(f"fields.type.map.{_quote(raw)}: {mapped!r} is not an event type")
    if type_spec.const is not None and type_spec.const not in known:
        raise MapError(f"fields.type: {type_spec.const!r} is not an event type")
    if type_spec.default is not None and type_spec.default not in known:
        raise MapError(f"fields.type.default: {type_spec.default!r} is not an event type")

    types_table = data.get("types", {})
    if not isinstance(types_table, dict):
        raise MapError('types: must be a table of [types."<event type>"] tables')
    types: dict[str, dict[str, FieldSpec]] = {}
    for kind, table in types_table.items():
        where = f"types.{_quote(kind)}"
        if kind not in known:
            raise MapError(f"{where}: {kind!r} is not an event type")
        types[kind] = _fields_table(where, table, common=False)

    repeats_table = data.get("repeats", {})
    if not isinstance(repeats_table, dict):
        raise MapError("repeats: must be a table")
    repeat_key: str | None = None
    repeats: dict[str, str] = {}
    for kind, target in repeats_table.items():
        where = f"repeats.{_quote(kind)}"
        if kind == "key":
            if not isinstance(target, str) or target not in fields:
                raise MapError(f'{where}: must name a field of [fields], like "ticket_id"')
            repeat_key = target
            continue
        if kind not in known:
            raise MapError(f"{where}: {kind!r} is not an event type")
        if target != "skip" and target not in known:
            raise MapError(f'{where}: {target!r} is neither "skip" nor an event type')
        if target == kind:
            raise MapError(f"{where}: a repeat cannot become its own type")
        repeats[kind] = target
    if repeats and repeat_key is None:
        raise MapError('repeats.key: required, the field that names a ticket ("ticket_id")')
    return ColumnMap(source, fields, types, repeat_key, repeats, **options)


def load_map(path: Path) -> ColumnMap:
    """Read and validate a column map file (TOML); MapError names the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MapError(f"{path}: cannot read the map: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MapError(f"{path}: not a TOML file: {exc}") from None
    return parse_map(data, str(path))


@dataclass
class ConvertStats:
    """What a conversion did: rows read, events made by type, rows skipped by reason."""

    rows: int = 0
    events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    first_skipped: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # line, value
    repeats: Counter[str] = field(default_factory=Counter)  # "ticket.created -> ..." : rows

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, line: int, value: object = None) -> None:
        self.skipped[reason] += 1
        if reason not in self.first_skipped:
            self.first_skipped[reason] = (line, None if value is None else str(value)[:200])

    def summary(self, limit: int = 10) -> str:
        """A few lines for a person: counts, then the skip reasons, most frequent first."""
        lines = [
            f"{self.rows} rows: {self.events} events, {self.skipped_total} skipped",
            "events: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_type.items())),
        ]
        if self.repeats:
            lines.append(
                "repeats: " + ", ".join(f"{k} {v}" for k, v in sorted(self.repeats.items()))
            )
        for reason, count in self.skipped.most_common(limit):
            line, value = self.first_skipped[reason]
            example = "" if value is None else f", {value!r}"
            lines.append(f"skipped {count}: {reason} (first at line {line}{example})")
        if len(self.skipped) > limit:
            lines.append(f"... and {len(self.skipped) - limit} more reasons")
        return "\n".join(lines)


def convert_csv(
    lines: Iterable[str], cmap: ColumnMap, stats: ConvertStats | None = None
) -> Iterator[dict[str, Any]]:
    """The events of a CSV text (its first row the header), in file order.

    The header is read and checked against the map at once: a column the map uses that the
    header lacks raises MapError naming the map key and the column, before any event.
    `stats` (filled while iterating) says how many rows became events or were skipped.
    """
    reader = csv.reader(lines, delimiter=cmap.delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise MapError(f"{cmap.source}: the CSV file is empty (no header row)") from None
    strip = cmap.strip
    header = [name.strip() if strip else name for name in header]
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name, i)
    for specs in (cmap.fields, *cmap.types.values()):
        for spec in specs.values():
            for column in sorted(spec.columns()):
                if column not in index:
                    shown = ", ".join(header[:40]) + (" ..." if len(header) > 40 else "")
                    raise MapError(
                        f"{cmap.source}: {spec.where}: column {column!r} is not in the CSV "
                        f"header ({shown})"
                    )
    return _convert(
        reader,
        lambda: reader.line_num,
        header,
        index,
        cmap,
        stats if stats is not None else ConvertStats(),
    )


def _convert(
    reader: Iterator[list[str]],
    line_num: Callable[[], int],
    header: Sequence[str],
    index: Mapping[str, int],
    cmap: ColumnMap,
    stats: ConvertStats,
) -> Iterator[dict[str, Any]]:
    known = event_types()
    needed = [(column, index[column]) for column in sorted(cmap.columns())]
    missing, strip, width = cmap.missing, cmap.strip, len(header)
    type_spec = cmap.fields["type"]
    key_spec = cmap.fields[cmap.repeat_key] if cmap.repeat_key else None
    specs: dict[str, list[tuple[str, FieldSpec]]] = {}
    last: dict[Value, str] = {}  # repeat key -> type of its previous converted row
    for cells in reader:
        stats.rows += 1
        line = line_num()
        if not cells:
            stats.skip("empty row", line)
            continue
        if len(cells) != width:
            stats.skip("wrong number of cells", line, f"{len(cells)} cells, header {width}")
            continue
        row: dict[str, str | None] = {}
        for column, i in needed:
            cell = cells[i].strip() if strip else cells[i]
            row[column] = None if cell in missing else cell
        try:
            kind = type_spec.evaluate(row)
            if kind is None:
                raise _Skip("fields.type: missing")
            if not isinstance(kind, str) or kind not in known:
                raise _Skip(f"fields.type: {str(kind)[:60]!r} is not an event type", kind)
            mapped = kind
            subject = key_spec.evaluate(row) if key_spec is not None else None
            repeat = None
            if subject is not None and kind in cmap.repeats and last.get(subject) == kind:
                target = cmap.repeats[kind]
                if target == "skip":
                    raise _Skip(f"repeats: {kind} again for the same {cmap.repeat_key}", subject)
                repeat = f"{kind} -> {target}"
                kind = target
            event: dict[str, Any] = {"event_id": None, "type": kind, "occurred_at": None}
            event["schema_version"] = 1
            fields = specs.get(kind)
            if fields is None:
                fields = [(n, s) for n, s in cmap.specs_for(kind).items() if n != "type"]
                specs[kind] = fields
            for name, spec in fields:
                value = spec.evaluate(row)
                if value is not None:
                    event[name] = value
        except _Skip as skip:
            stats.skip(skip.reason, line, skip.value)
            continue
        for name in ("event_id", "occurred_at"):
            if event[name] is None:
                del event[name]
        if subject is not None:
            last[subject] = mapped
        if repeat is not None:
            stats.repeats[repeat] += 1
        stats.events += 1
        stats.by_type[kind] += 1
        yield event


def is_csv_path(path: Path) -> bool:
    """A .csv or .csv.gz file name (any case)."""
    name = Path(path).name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def _open_bytes(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def read_csv_events(
    path: Path, cmap: ColumnMap, stats: ConvertStats | None = None
) -> Iterator[dict[str, Any]]:
    """The events of a .csv or .csv.gz file, in file order (see `convert_csv`).

    The header is checked when this is called; the file is closed when the iterator is
    exhausted or closed.
    """
    text = io.TextIOWrapper(_open_bytes(Path(path)), encoding=cmap.encoding, newline="")
    try:
        events = convert_csv(text, cmap, stats)
    except BaseException:
        text.close()
        raise
    return _closing(events, text)


def _closing(events: Iterator[dict[str, Any]], handle: IO[str]) -> Iterator[dict[str, Any]]:
    try:
        yield from events
    finally:
        handle.close()
