"""The schemas are the contract's machine-readable form: every type of EVENTS.md has one, and
every example shows what it claims, for the runtime validator (fastjsonschema) and the
reference implementation (jsonschema) alike."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from stream.schema_registry import (
    SCHEMA_BASE_URI,
    event_schema_files,
    event_types,
    load_event_validators,
    schema_dir,
)

# Every type of ../shared/EVENTS.md (helpdesk.events, orders.events, indicators.external).
CONTRACT_TYPES = {
    "ticket.created",
    "ticket.replied",
    "ticket.status_changed",
    "ticket.assigned",
    "ticket.priority_changed",
    "ticket.escalated",
    "ticket.solved",
    "ticket.reopened",
    "ticket.closed",
    "survey.csat",
    "survey.nps",
    "selfservice.session",
    "agent.shift",
    "order.placed",
    "order.confirmed",
    "order.shipped",
    "order.delayed",
    "order.delivered",
    "order.cancelled",
    "notification.sent",
    "customer.contacted",
    "indicator.reported",
}
EVENTS = schema_dir() / "events"
EXAMPLES = schema_dir() / "examples"
VALID = sorted((EXAMPLES / "valid").glob("*.json"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.json"))
COMMON_REF = "common.v1.schema.json#/definitions/"


def example_type(path: Path) -> str:
    # <type>.<label>.json, where the type itself has one dot: ticket.created.email.json
    return ".".join(path.name.split(".")[:2])


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def refs(node: Any) -> Iterator[str]:
    """Every $ref in a schema, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    return load_event_validators()


@pytest.fixture(scope="module")
def reference_registry() -> Registry[Any]:
    """jsonschema's view of the same files, also resolved locally (never the network)."""
    resources = [
        (SCHEMA_BASE_URI + path.name, Resource.from_contents(read(path)))
        for path in EVENTS.glob("*.json")
    ]
    return Registry().with_resources(resources)


def reference_validator(kind: str, registry: Registry[Any]) -> Draft7Validator:
    return Draft7Validator(read(event_schema_files()[kind]), registry=registry)


def test_every_contract_type_has_a_schema_and_a_validator(validators: dict[str, Any]) -> None:
    assert event_types() == CONTRACT_TYPES
    assert set(validators) == CONTRACT_TYPES


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_every_schema_is_valid_draft_07(path: Path) -> None:
    schema = read(path)
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"] == SCHEMA_BASE_URI + path.name
    assert schema["title"]
    assert schema["description"]


@pytest.mark.parametrize("kind", sorted(CONTRACT_TYPES))
def test_every_type_schema_follows_the_conventions(kind: str) -> None:
    schema = read(EVENTS / f"{kind}.v1.schema.json")
    common = read(EVENTS / "common.v1.schema.json")["definitions"]
    assert schema["type"] == "object"
    assert schema["properties"]["type"] == {"const": kind}
    assert schema["additionalProperties"] is True  # unknown extra fields are kept and ignored
    assert {"$ref": COMMON_REF + "envelope"} in schema["allOf"]
    for ref in refs(schema):
        # Relative to the $id, so the registry resolves it from the local common file.
        assert ref.startswith(COMMON_REF)
        assert ref.removeprefix(COMMON_REF) in common


def test_every_type_has_a_valid_example() -> None:
    assert {example_type(p) for p in VALID} == CONTRACT_TYPES


@pytest.mark.parametrize("kind", ["ticket.created", "ticket.replied"])
def test_the_main_types_show_offsets_and_unknown_fields(kind: str) -> None:
    events = [read(p) for p in VALID if example_type(p) == kind]
    known = set(read(EVENTS / f"{kind}.v1.schema.json")["properties"])
    known |= {"event_id", "occurred_at", "schema_version", "ticket_id", "customer_id"}
    assert len(events) >= 2
    assert any(not e["occurred_at"].upper().endswith("Z") for e in events)
    if kind == "ticket.created":
        assert any("+02:00" in e["occurred_at"] for e in events)
        assert any(set(e) - known for e in events)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_example_passes(
    path: Path, validators: dict[str, Any], reference_registry: Registry[Any]
) -> None:
    event = read(path)
    assert event["type"] == example_type(path)
    assert validators[example_type(path)](event) == event
    reference_validator(example_type(path), reference_registry).validate(event)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_example_is_rejected_for_its_field(
    path: Path, validators: dict[str, Any], reference_registry: Registry[Any]
) -> None:
    example = read(path)
    assert set(example) == {"why", "field", "rule", "event"}
    assert example["why"].strip()
    assert "\n" not in example["why"]
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
        validators[example_type(path)](example["event"])
    # Rejected for the reason the example is about, not something unrelated:
    # the failing keyword, and the field named in the error's path or message.
    assert caught.value.rule == example["rule"], caught.value.message
    assert example["field"] in f"{caught.value.name} {caught.value.message}"
    reference = reference_validator(example_type(path), reference_registry)
    assert not reference.is_valid(example["event"])


def test_the_invalid_examples_cover_every_kind_of_rule() -> None:
    assert len(INVALID) >= 25
    rules = {read(p)["rule"] for p in INVALID}
    assert rules >= {
        "required",
        "type",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
    }
    assert {example_type(p) for p in INVALID} == CONTRACT_TYPES


@pytest.mark.parametrize(
    ("occurred_at", "ok"),
    [
        ("2026-11-24T09:15:30Z", True),
        ("2026-11-24T09:15:30.1+02:00", True),
        ("2026-11-24T09:15:30.123456789-05:30", True),
        ("2026-11-24t09:15:30z", True),
        ("2026-11-24T09:15:30", False),  # naive
        ("2026-11-24T09:15:30.123", False),  # naive with milliseconds
        ("2026-11-24T09:15:30+02", False),
        ("2026-11-24T09:15:30Z\n", False),  # $ must not match before a trailing newline
        ("2026-11-24T24:00:00Z", False),
        ("2026-11-24T09:15:30+24:00", False),
        ("٢٠٢٦-11-24T09:15:30Z", False),  # non-ASCII digits
    ],
)
def test_timestamps_need_an_offset(occurred_at: str, ok: bool, validators: dict[str, Any]) -> None:
    event = read(EXAMPLES / "valid" / "ticket.closed.plain.json") | {"occurred_at": occurred_at}
    if ok:
        validators["ticket.closed"](event)
    else:
        with pytest.raises(fastjsonschema.JsonSchemaValueException, match="occurred_at"):
            validators["ticket.closed"](event)


def test_validators_are_compiled_once() -> None:
    first, second = load_event_validators(), load_event_validators()
    assert first is not second  # callers get their own dict...
    assert first["ticket.created"] is second["ticket.created"]  # ...of the same validators


def test_references_are_resolved_from_the_given_directory(tmp_path: Path) -> None:
    shutil.copytree(EVENTS, tmp_path / "events")
    common_path = tmp_path / "events" / "common.v1.schema.json"
    common = read(common_path)
    common["definitions"]["priority"]["enum"].append("critical")
    common_path.write_text(json.dumps(common), encoding="utf-8")
    event = read(EXAMPLES / "valid" / "ticket.created.email.json") | {"priority": "critical"}

    load_event_validators(tmp_path)["ticket.created"](event)  # the local copy, not the web
    with pytest.raises(fastjsonschema.JsonSchemaValueException, match="priority"):
        load_event_validators()["ticket.created"](event)


def test_a_reference_outside_our_schemas_is_refused(tmp_path: Path) -> None:
    shutil.copytree(EVENTS, tmp_path / "events")
    path = tmp_path / "events" / "ticket.closed.v1.schema.json"
    schema = read(path)
    schema["allOf"].append({"$ref": "https://example.com/schemas/other.json"})
    path.write_text(json.dumps(schema), encoding="utf-8")
    with pytest.raises(ValueError, match=r"example\.com"):
        load_event_validators(tmp_path)
