"""Contributions: what a ticket (or a session) adds to the event-time windows.

A contribution is one fact at one event time: a count (`created`, `solved:agent`, ...)
or a sample for a sketch (`first_response_seconds`, ...), in one dimension set. A
ticket's contributions are a pure function of its set of events (tickets.py); when an
event arrives, the difference between its contributions after and before is applied to
the windows. A late event that changes an earlier fact (an earlier reply turns up) thus
takes the old fact back and adds the new one: windows that are not final stay exact
whatever order the events arrived in.

`ident` names the fact for the live counters, which count a fact once, the first time
it appears, and never take it back (Prometheus counters only go up).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

# (queue label, priority); ("", "") for facts that belong to no ticket dimension.
Dims = tuple[str, str]
NO_DIMS: Dims = ("", "")
# The partition's whole active-ticket count, in partials: the all-tickets rollup of H1
# needs every dimension set, not only those that changed in the window.
ALL_DIMS: Dims = ("", "all")

# Names whose value is a sample for a sketch; every other name is a count whose value
# is added up (1 for most facts, +1/-1 for active-ticket moves, an amount for money).
SAMPLE_NAMES = frozenset(
    {
        "first_response_seconds",
        "resolution_seconds",
        "full_resolution_seconds",
        "requester_wait_seconds",
        "agent_work_seconds",
        "handle_seconds",
        "selfservice_screens",
        "selfservice_clicks",
        "confirmation_seconds",  # O1, in order windows
    }
)

ACTIVE_PREFIX = "active:"


class Contribution(NamedTuple):
    at_ms: int
    dims: Dims
    name: str
    value: float
    ident: str


def is_sample(name: str) -> bool:
    return name in SAMPLE_NAMES


def diff(
    before: Iterable[Contribution], after: Iterable[Contribution]
) -> list[tuple[Contribution, int]]:
    """(contribution, +1 or -1) that turn `before` into `after` (multisets).

    In the order of first appearance in `after`, then in `before` (the order of
    `Counter(after) - Counter(before)`): the windows add their floats in that order.
    A plain dict, not Counter: this runs for every event."""
    change: dict[Contribution, int] = {}
    get = change.get
    for item in after:
        change[item] = get(item, 0) + 1
    for item in before:
        change[item] = get(item, 0) - 1
    out: list[tuple[Contribution, int]] = []
    for item, n in change.items():
        if n == 1:
            out.append((item, 1))
        elif n == -1:
            out.append((item, -1))
        elif n:
            sign = 1 if n > 0 else -1
            out.extend((item, sign) for _ in range(abs(n)))
    return out


def session_contributions(
    at_ms: int, screens: int, clicks: int, succeeded: bool, ident: str
) -> list[Contribution]:
    """H15: one self-service session (with or without a ticket)."""
    facts = [
        Contribution(at_ms, NO_DIMS, "selfservice:sessions", 1, ident),
        Contribution(at_ms, NO_DIMS, "selfservice_screens", float(screens), ident),
        Contribution(at_ms, NO_DIMS, "selfservice_clicks", float(clicks), ident),
    ]
    if succeeded:
        facts.append(Contribution(at_ms, NO_DIMS, "selfservice:succeeded", 1, ident))
    return facts
