"""How our procrastinate tasks are registered, where several share a policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import procrastinate
from procrastinate.tasks import Task

# For a job that schedules its own next attempt when its work fails (backoff kept on the
# row it works on, dead at its own maximum): this retry covers only a failure to record
# that outcome (the database gone a moment) or a worker stopped mid-job.
RECORDING_RETRY = procrastinate.RetryStrategy(max_attempts=5, wait=5, linear_wait=30)


Periodic = Callable[[int], Awaitable[None]]  # given the time it was scheduled for


def periodic_alone(
    blueprint: procrastinate.Blueprint, *, cron: str, name: str, lock: str
) -> Callable[[Periodic], Task[[int], Awaitable[None], []]]:
    """A periodic task of which one job at most waits (queueing_lock) and one runs (lock):
    a run that overruns its period neither piles up copies nor races the next one."""

    def register(func: Periodic) -> Task[[int], Awaitable[None], []]:
        task = blueprint.task(name=name, queueing_lock=lock, lock=lock)(func)
        return blueprint.periodic(cron=cron)(task)

    return register
