from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """argon2id hashes; the cost is configurable (tests and small machines lower it).

    Hashing costs tens of milliseconds of CPU and PASSWORD_HASH_MEMORY_KIB of memory, so it
    runs in a pool of its own (argon2-cffi releases the GIL): the event loop keeps
    answering while logins wait, and `concurrency` bounds the threads, so a burst of logins
    queues instead of taking every core and a hash's memory times the burst."""

    def __init__(self, time_cost: int, memory_cost_kib: int, concurrency: int = 1) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib)
        self._pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="argon2", initializer=_lower_priority
        )
        # Verified against when the email is unknown, so a login costs the same either way.
        self._dummy = self._hasher.hash("not a password")

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False


# How much nicer than the rest of the process a hashing thread runs (Linux schedules
# threads apart): when the CPUs are busy, the event loop and the database get them first
# and logins wait a little longer, rather than every request waiting for logins.
HASHING_NICENESS = 10


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
