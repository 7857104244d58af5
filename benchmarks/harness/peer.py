"""The Quix Streams peer (benchmarks/peers/quix_app.py), in its own virtualenv.

Quix Streams brings confluent-kafka, its own rocksdict and pydantic pins: kept out of the
project's environment, in `.kpi/bench-venv`, installed from the pinned
benchmarks/peers/requirements.txt on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"


@dataclass(frozen=True)
class PeerRun:
    messages: int
    seconds: float
    rss_bytes: int

    @property
    def events_per_second(self) -> float:
        return self.messages / self.seconds


def ensure_venv(venv: Path) -> Path:
    """The peer's interpreter; the virtualenv is made (or brought up to date) first."""
    python = venv / "bin" / "python"
    requirements = PEERS / "requirements.txt"
    stamp = venv / ".installed"
    if python.exists() and stamp.exists() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
    stamp.touch()
    return python


def run_quix(
    python: Path,
    bootstrap: str,
    topics: list[str],
    expected: int,
    run: str,
    state_dir: Path,
    log_path: Path,
    timeout_s: float = 900,
) -> PeerRun:
    """Run the Quix application over `expected` messages of `topics`, from the beginning."""
    command = [str(python), str(PEERS / "quix_app.py"), "--bootstrap", bootstrap]
    for topic in topics:
        command += ["--topic", topic]
    command += [
        "--expected",
        str(expected),
        "--group",
        f"quix-bench-{run}",
        "--state-dir",
        str(state_dir),
        "--output-prefix",
        f"{run}.quix",
    ]
    started = time.monotonic()
    with log_path.open("ab") as log:
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=log, timeout=timeout_s, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"the Quix peer exited with {result.returncode}:\n{tail}")
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the Quix peer printed no result in {time.monotonic() - started:.0f} s")
    report = json.loads(lines[-1])
    seconds = (report["last_wall_ms"] - report["first_wall_ms"]) / 1000
    return PeerRun(int(report["processed"]), seconds, int(report.get("rss_bytes", 0)))
