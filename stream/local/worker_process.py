"""`kpi worker` as a child process, the way the benchmark and the integration tests run
it: started with a set of KPI_* variables, its output in a log file, stopped in order
(SIGTERM), interrupted (SIGINT, so a profiler writes its report) or killed (-9)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from stream.settings import Settings


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    env: dict[str, str]

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        log_path: Path,
        loglevel: str = "warn",
        profile_to: Path | None = None,
        new_session: bool = False,
    ) -> Self:
        """`profile_to`: run under pyinstrument, its text report written there at SIGINT.
        `new_session`: the worker and its children in a process group of their own, which
        `kill` ends as a whole (a profiler's child too)."""
        profiler = []
        if profile_to is not None:
            profiler = ["-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(profile_to)]
        process = subprocess.Popen(
            [sys.executable, *profiler, "-m", "stream.cli", "worker", "--loglevel", loglevel],
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=new_session,
        )
        port = env.get("KPI_WEB_PORT") or str(Settings.model_fields["web_port"].default)
        return cls(process, f"http://127.0.0.1:{port}", log_path, env)

    def get(self, path: str, timeout_s: float = 5) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as response:
            return bytes(response.read())

    def metrics_text(self) -> str:
        return self.get("/metrics").decode()

    def rss_bytes(self) -> int:
        """Resident memory of the worker process, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the worker exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9: no shutdown, no final commit."""
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(self.process.pid) == self.process.pid:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own group: all of it
            else:
                self.process.kill()
        self.process.wait()

    def interrupt(self, timeout_s: float = 120) -> None:
        """Ctrl-C: the worker stops in order (and a profiler writes its report)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self) -> None:
        """SIGTERM, and -9 after 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
