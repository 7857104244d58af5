"""The event schemas (schemas/events/*.v1.schema.json), compiled once into validators.

The schemas are data shared with producers (they can validate before they send); this module
only finds and compiles them, so the service and the producers check exactly the same rules.
fastjsonschema turns each schema into Python code once, which makes a validation a few
microseconds: cheap enough to run on every message of the hot path.

References between schema files (`common.v1.schema.json#/definitions/...`, relative to each
schema's `$id` under https://kpi-stream.dev/schemas/events/) are resolved from the local files,
never the network: a worker must start without internet access, and a schema fetched at runtime
could differ from the one that was reviewed and released with the code.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema

import stream

SCHEMA_BASE_URI = "https://kpi-stream.dev/schemas/events/"
_SUFFIX = ".v1.schema.json"
_COMMON = "common" + _SUFFIX

Validator = Callable[[Any], Any]


def schema_dir() -> Path:
    """The schemas directory, holding events/, examples/ and kpi/.

    A wheel install carries a copy in stream/_schemas (hatch force-include in pyproject.toml);
    an editable install or a checkout uses the repository's schemas/ itself, so an edited
    schema takes effect without a reinstall.
    """
    packaged = Path(stream.__file__).parent / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "schemas"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def event_schema_files(directory: Path | None = None) -> dict[str, Path]:
    """Event type -> its schema file; the type is the file name without `.v1.schema.json`.

    The file names are the list of types, so adding a type is adding a file.
    common.v1.schema.json holds shared definitions only and is no type.
    """
    events = (directory or schema_dir()) / "events"
    return {
        path.name[: -len(_SUFFIX)]: path
        for path in sorted(events.glob("*" + _SUFFIX))
        if path.name != _COMMON
    }


def event_types(directory: Path | None = None) -> frozenset[str]:
    """All event types that have a schema: what a message's `type` may be."""
    return frozenset(event_schema_files(directory))


def _local_resolver(events_dir: Path) -> Callable[[str], dict[str, Any]]:
    """A fastjsonschema `https` handler that reads our own URIs from `events_dir`.

    Anything outside SCHEMA_BASE_URI is refused rather than fetched, so a typo in a `$ref`
    fails at startup instead of making the worker depend on a web server.
    """

    @functools.cache
    def load_file(name: str) -> dict[str, Any]:
        return _load(events_dir / name)

    def resolve(uri: str) -> dict[str, Any]:
        name = uri.split("#", 1)[0].removeprefix(SCHEMA_BASE_URI)
        if not uri.startswith(SCHEMA_BASE_URI) or not name or "/" in name or "\\" in name:
            raise ValueError(f"schema reference {uri!r} is not a file under {SCHEMA_BASE_URI}")
        return load_file(name)

    return resolve


@functools.cache
def _compile_all(events_dir: Path) -> dict[str, Validator]:
    """Compile every type's schema; cached per directory because compiling all of them
    takes a fraction of a second, and agents, tests and the CLI each ask for them."""
    resolve = _local_resolver(events_dir)
    return {
        kind: fastjsonschema.compile(_load(path), handlers={"https": resolve})
        for kind, path in event_schema_files(events_dir.parent).items()
    }


def load_event_validators(directory: Path | None = None) -> dict[str, Validator]:
    """Event type -> a validator that returns the event or raises
    fastjsonschema.JsonSchemaValueException, whose `.message` says what is wrong, `.name`
    where (like `data.settled_amount.currency`) and `.rule` which keyword failed.

    `directory` is a schemas directory (holding events/); default schema_dir(). The result
    is a fresh dict of the once-compiled validators, so a caller may modify it.
    """
    return dict(_compile_all(((directory or schema_dir()) / "events").resolve()))
