"""Event builders for unit tests: valid events per ../shared/EVENTS.md, little noise."""

from __future__ import annotations

import itertools
from typing import Any

from stream.kpi.events import Event
from stream.kpi.timefmt import format_rfc3339_ms

_ids = itertools.count(1)
T0 = 1_795_515_330_000  # 2026-11-24T10:15:30Z
MINUTE = 60_000
HOUR = 3_600_000


def ticket_event(kind: str, ticket_id: str, at_ms: int, **fields: Any) -> Event:
    event_id = fields.pop("event_id", None) or f"e-{next(_ids)}"
    body = {
        "event_id": event_id,
        "type": kind,
        "occurred_at": format_rfc3339_ms(at_ms),
        "ticket_id": ticket_id,
        "customer_id": fields.pop("customer_id", "c-1"),
        **fields,
    }
    return Event(event_id, kind, at_ms, body)


def created(
    ticket_id: str, at_ms: int, priority: str = "normal", queue: str = "billing", **fields: Any
) -> Event:
    return ticket_event(
        "ticket.created",
        ticket_id,
        at_ms,
        queue=queue,
        priority=priority,
        channel="email",
        **fields,
    )


def agent_reply(ticket_id: str, at_ms: int, public: bool = True, **fields: Any) -> Event:
    return ticket_event(
        "ticket.replied", ticket_id, at_ms, author="agent", public=public, agent_id="a-1", **fields
    )


def status_changed(ticket_id: str, at_ms: int, status: str) -> Event:
    return ticket_event("ticket.status_changed", ticket_id, at_ms, status=status)


def same_queue(queue: str) -> str:
    """The queue label mapping of the pure tests: every queue keeps its name."""
    return queue


def order_event(event_type: str, order_id: str, at_ms: int, **fields: Any) -> Event:
    event_id = fields.pop("event_id", None) or f"o-{next(_ids)}"
    body = {
        "event_id": event_id,
        "type": event_type,
        "occurred_at": format_rfc3339_ms(at_ms),
        "order_id": order_id,
        "customer_id": fields.pop("customer_id", "c-1"),
        **fields,
    }
    return Event(event_id, event_type, at_ms, body)
