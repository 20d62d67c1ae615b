"""The threads a worker process calls its providers from, and how many calls it keeps in flight
at once."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

# A call that took longer than this was waiting on the network (Twilio answers in 0.1-0.3 s),
# not on the CPU or its turn at the interpreter lock behind a batch being rendered.
SLOW_CALL_SECONDS = 0.05
FEWEST_IN_FLIGHT = 4


class InFlight:
    """How many provider calls a worker process keeps in flight. Few while the provider answers
    at once: more threads would only take turns at the interpreter lock, and the handing over
    costs more than the calls (16 threads sent 10% fewer messages per CPU second than 8, and
    8 as many as 4, against a provider answering at once). More, up to `most`, while calls
    spend their time waiting for the provider, as they do across the internet."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.size = min(FEWEST_IN_FLIGHT, most)
        self._lock = threading.Lock()  # `notifier serve` sends several batches at once

    def answered(self, seconds: float) -> int:
        """How many calls to start now that one has answered in `seconds`."""
        with self._lock:
            if seconds > SLOW_CALL_SECONDS and self.size < self.most:
                self.size += 1
                return 2
            if seconds <= SLOW_CALL_SECONDS and self.size > min(FEWEST_IN_FLIGHT, self.most):
                self.size -= 1
                return 0
            return 1


_pools: dict[tuple[int, int], tuple[ThreadPoolExecutor, InFlight]] = {}
_pools_lock = threading.Lock()


def provider_calls(size: int) -> tuple[ThreadPoolExecutor, InFlight]:
    """The process's threads for provider calls, and how many of them to use. Keyed by pid
    too: a forked worker process inherits the dict but not the threads."""
    key = (os.getpid(), size)
    with _pools_lock:
        if key not in _pools:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="provider")
            _pools[key] = (pool, InFlight(size))
        return _pools[key]
