"""Loopback fakes of the services notifier talks to (Twilio's REST API, SMTP) and test helpers."""

from __future__ import annotations

import importlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .smtp import SMTPSink
    from .twilio import FakeTwilio

__all__ = ["FakeTwilio", "SMTPSink", "free_port", "stop", "wait_until"]

# The fakes are imported on first use: eager imports here would make
# `python -m tests.fakes.twilio` load that module twice (runpy warns about it),
# and would make the stdlib-only Twilio fake drag in aiosmtpd.
_LAZY = {"FakeTwilio": ".twilio", "SMTPSink": ".smtp"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wait_until(
    predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02
) -> bool:
    """Poll `predicate` until it is truthy; False if it still is not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(processes: Iterable[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM to all at once, then up to `timeout` seconds each to exit before SIGKILL."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
