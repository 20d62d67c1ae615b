"""`notifier web --workers N`: N web processes on one port, and a parent that keeps them running.

Each process listens on a socket of its own, bound with SO_REUSEPORT, and the kernel spreads
new connections over them. With one shared socket, whichever process wakes first accepts a
whole burst of connections and keeps them for as long as their clients keep them alive, while
the other processes idle.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from . import logs, runtime
from .runtime import Runtime

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("notifier")
# The exit status of a process that could not start (uvicorn's own for a failed startup): it is
# broken, not unlucky, and starting it again would only fail the same way.
STARTUP_FAILURE = 3


def run(host: str, port: int, workers: int) -> None:
    _check_port_free(host, port)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited connections

    def start() -> BaseProcess:
        process = spawn.Process(target=_serve, args=(host, port), name="notifier-web")
        process.start()
        return process

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    running = [start() for _ in range(workers)]
    while not stopping.wait(0.5):
        for i, process in enumerate(running):
            if process.is_alive():
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("web process %s could not start; stopping", process.pid)
                stopping.set()
                break
            log.warning(
                "web process %s died (exit %s); starting another", process.pid, process.exitcode
            )
            running[i] = start()
    for process in running:
        process.terminate()  # uvicorn finishes the requests in flight, then exits
    for process in running:
        process.join()


def _check_port_free(host: str, port: int) -> None:
    """SO_REUSEPORT would let the processes share the port with another server left running on
    it; a plain bind first makes a taken port the clear error it is without the option."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            message = f"notifier web: cannot listen on {host}:{port}: {exc.strerror}"
            raise SystemExit(message) from None


def _serve(host: str, port: int) -> None:
    import uvicorn

    try:
        app, sock = process_app(), listening_socket(host, port)
    except Exception:
        log.exception("web process %d cannot start", os.getpid())
        sys.exit(STARTUP_FAILURE)
    uvicorn.Server(uvicorn.Config(app, log_config=None)).run(sockets=[sock])


def process_app() -> FastAPI:
    """The app of one `notifier web --workers N` process. Each builds its own runtime, so no two
    processes share a database connection."""
    from .web import create_app

    settings = runtime.distributed_settings("web", needs_broker=False)
    logs.configure(logging.INFO, settings.json_logs)
    rt = runtime.from_env(settings)
    return create_app(rt, broker_ping(rt))


def broker_ping(rt: Runtime) -> Callable[[], None] | None:
    """The broker check of the web's /readyz and of `notifier doctor`; None without a broker."""
    if not rt.settings.broker_url:
        return None
    from .tasks import broker_ping  # Celery: only in processes that have a broker

    return broker_ping


def listening_socket(host: str, port: int) -> socket.socket:
    """This process's listening socket. Made here rather than by uvicorn: asyncio sets TCP_NODELAY
    only on connections whose socket says IPPROTO_TCP, and uvicorn leaves the protocol at 0
    (Kludex/uvicorn#3149); without it every keep-alive answer after the first waits ~40 ms for
    the client's delayed ACK."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
