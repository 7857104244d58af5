"""Bounded label values: an unbounded label set would grow Prometheus without limit."""

from __future__ import annotations

OTHER = "other"


class BoundedLabels:
    """Maps raw values (queue names) onto a bounded set, the rest onto 'other'.

    With an explicit `allowed` list only those values keep their name. Without one, the
    first `limit` distinct values seen keep theirs. The mapping of a value never changes
    once made, so a ticket counted under a label can always be uncounted under it.
    """

    __slots__ = ("_allowed", "_fixed", "_limit")

    def __init__(self, allowed: tuple[str, ...] = (), limit: int = 50) -> None:
        self._fixed = bool(allowed)
        self._allowed: set[str] = set(allowed)
        self._limit = limit

    def label(self, value: str) -> str:
        if value in self._allowed:
            return value
        if not self._fixed and len(self._allowed) < self._limit:
            self._allowed.add(value)
            return value
        return OTHER

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self._allowed)
