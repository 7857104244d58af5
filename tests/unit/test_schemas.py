"""The schemas are the contract's machine-readable form: every type has one, every
example shows what it claims."""

from __future__ import annotations

import json
from pathlib import Path

import fastjsonschema
import pytest
from jsonschema import Draft7Validator

from stream.schema_registry import event_schema_files, load_event_validators, schema_dir

# Every type of ../shared/EVENTS.md.
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
EXAMPLES = schema_dir() / "examples"


def example_type(path: Path) -> str:
    # <type>.<label>.json, where the type itself has one dot: ticket.created.email.json
    return ".".join(path.name.split(".")[:2])


def test_every_contract_type_has_a_schema() -> None:
    assert set(event_schema_files()) == CONTRACT_TYPES


@pytest.mark.parametrize("path", sorted((schema_dir() / "events").glob("*.json")), ids=str)
def test_every_schema_is_valid_draft_07(path: Path) -> None:
    schema = json.loads(path.read_text())
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"].endswith("/" + path.name)


def test_every_type_has_a_valid_example() -> None:
    assert {example_type(p) for p in (EXAMPLES / "valid").glob("*.json")} == CONTRACT_TYPES


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.json")), ids=lambda p: p.name)
def test_every_valid_example_passes(path: Path) -> None:
    load_event_validators()[example_type(path)](json.loads(path.read_text()))


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.name
)
def test_every_invalid_example_is_rejected_for_its_field(path: Path) -> None:
    example = json.loads(path.read_text())
    assert example["why"]
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
        load_event_validators()[example_type(path)](example["event"])
    # The rejection names the field the example is about, not something unrelated.
    assert example["field"] in f"{caught.value.name} {caught.value.message}"


def test_there_are_enough_invalid_examples() -> None:
    assert len(list((EXAMPLES / "invalid").glob("*.json"))) >= 25
