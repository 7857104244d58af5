"""Shared fixtures. Servers started here listen on loopback only and stop by themselves."""

from __future__ import annotations

import os
import shutil
import socket

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
