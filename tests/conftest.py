"""Shared fixtures. Servers started here listen on loopback only and stop by themselves."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str) -> str:
    """The path of a command-line tool; fail under scripts/test, skip elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("KPI_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{name} is not installed (scripts/test installs it with apt-get)")
    pytest.skip(f"{name} is not installed")


def shared_data(name: str) -> Path:
    """A file of the real public logs beside the project (../shared/data; never copied
    in): found from the checkout, wherever it is cloned, or KPI_SHARED_DATA."""
    here = Path(__file__).resolve().parents[1]
    candidates = [
        Path(os.environ.get("KPI_SHARED_DATA", "/nonexistent")),
        here.parent / "shared" / "data",
        Path("/work/shared/data"),
    ]
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    return candidates[-1] / name


def require_shared_data(name: str) -> Path:
    """A real public log of ../shared/data; fail under scripts/test, skip elsewhere."""
    path = shared_data(name)
    if path.is_file():
        return path
    if os.environ.get("KPI_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{path} is missing: the tests read ../shared/data beside the checkout")
    pytest.skip(f"{path} is not on this machine")
