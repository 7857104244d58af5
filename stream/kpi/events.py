"""The decoded form of an input event: the envelope in typed fields, the rest as a dict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRIORITIES = ("urgent", "high", "normal", "low")
ACTIVE_STATUSES = ("new", "open", "pending", "on_hold")
INACTIVE_STATUSES = ("solved", "closed")


@dataclass(frozen=True, slots=True)
class Event:
    """One valid event. `body` is the whole JSON object, unknown fields included."""

    event_id: str
    type: str
    occurred_at_ms: int
    body: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, default)
