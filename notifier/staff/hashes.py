"""Password hashes (Argon2id), and the cap on how many a web process computes at once.

Each Argon2 hash takes 64 MiB for its moment: forty sign-ins at once took a process past a
gigabyte. So a process runs at most `NOTIFIER_LOGIN_CONCURRENCY` of them, a few more wait their
turn briefly, and the rest are told to come back (429 with Retry-After) before any work is done.
The hashes run on threads of their own at a lower CPU priority (nice 10): under a flood of
sign-ins the health checks, the API and the pages still go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Sign-ins that may wait for a free slot, per slot, and for how long.
WAITING_PER_SLOT = 4
WAIT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 5
LOWER_PRIORITY = 10

T = TypeVar("T")

_hasher = PasswordHasher()


class Busy(Exception):
    """Too many sign-ins at once in this process; try again in RETRY_AFTER_SECONDS."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def verifies(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def spend_a_check(password: str) -> None:
    """The work of a real check, against no one's hash: an unknown, closed or throttled account
    takes as long to refuse as a wrong password, so the timing names no one."""
    verifies(_decoy_hash(), password)


@cache
def _decoy_hash() -> str:
    return _hasher.hash("no one's password")


@dataclass
class _Slots:
    free: asyncio.Semaphore
    waiting: int = 0
    limit: int = field(default=0)


# One set of slots per event loop: a process has one, a test run may start several.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots] = weakref.WeakKeyDictionary()


async def in_a_slot(concurrency: int, check: Callable[[], T]) -> T:
    """Runs `check` (which hashes a password) on a hashing thread once a slot is free."""
    async with _slot(concurrency):
        return await asyncio.get_running_loop().run_in_executor(_threads(concurrency), check)


@cache
def _threads(concurrency: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        concurrency, thread_name_prefix="password", initializer=_lower_priority
    )


def _lower_priority() -> None:
    # Per thread on Linux, and inherited by the threads Argon2 starts for its lanes.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWER_PRIORITY)


@asynccontextmanager
async def _slot(concurrency: int) -> AsyncIterator[None]:
    """Holds one of `concurrency` hashing slots of this process; raises Busy when the short
    line before them is full or does not move within WAIT_SECONDS."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None or slots.limit != concurrency:
        slots = _slots[loop] = _Slots(asyncio.Semaphore(concurrency), limit=concurrency)
    if slots.free.locked() and slots.waiting >= WAITING_PER_SLOT * concurrency:
        raise Busy
    slots.waiting += 1
    try:
        await asyncio.wait_for(slots.free.acquire(), WAIT_SECONDS)
    except TimeoutError:
        raise Busy from None
    finally:
        slots.waiting -= 1
    try:
        yield
    finally:
        slots.free.release()
