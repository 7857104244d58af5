"""The hostile-message corpus (README.md): read by the unit and the integration tests."""

from __future__ import annotations

import gzip
import tomllib
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent
TOPICS = ("helpdesk", "orders", "indicators")


@dataclass(frozen=True)
class CorpusMessage:
    name: str
    topic: str  # helpdesk, orders or indicators
    expected: str  # "accepted", or the dead-letter reason
    why: str
    raw: bytes | None  # None: no value (a tombstone)
    bug: str  # "" or the known bug of README.md that keeps it from being handled

    @property
    def accepted(self) -> bool:
        return self.expected == "accepted"


def load_corpus() -> list[CorpusMessage]:
    manifest = tomllib.loads((CORPUS_DIR / "corpus.toml").read_text(encoding="utf-8"))
    out = []
    for entry in manifest["message"]:
        raw: bytes | None = None
        if not entry.get("tombstone"):
            data = (CORPUS_DIR / "messages" / entry["file"]).read_bytes()
            raw = gzip.decompress(data) if entry["file"].endswith(".gz") else data
        out.append(
            CorpusMessage(
                entry["name"],
                entry["topic"],
                entry["expected"],
                entry["why"],
                raw,
                entry.get("bug", ""),
            )
        )
    return out
