"""Background work on procrastinate, in the same PostgreSQL as the money.

Each domain keeps its tasks in its own `tasks.py` on a Blueprint; this module gathers them
into one procrastinate App. Tasks reach the process's Runtime through `runtime()`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import procrastinate

from handwork_payments.db import libpq_url
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

_runtime: Runtime | None = None


def runtime() -> Runtime:
    assert _runtime is not None, "tasks run only inside a worker started by run_worker()"
    return _runtime


def blueprints() -> list[procrastinate.Blueprint]:
    from handwork_payments.payments.tasks import blueprint as payments
    from handwork_payments.payouts.tasks import blueprint as payouts
    from handwork_payments.webhooks.tasks import blueprint as webhooks

    return [payments, payouts, webhooks]


@functools.cache
def build_app(database_url: str) -> procrastinate.App:
    """One App per database and process: adding a blueprint to an App renames its tasks
    in place (the namespace), so the blueprints can be added only once."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(database_url))
    )
    for blueprint in blueprints():
        app.add_tasks_from(blueprint, namespace="hp")
    return app


@asynccontextmanager
async def running_worker(
    current: Runtime, *, concurrency: int = 4, name: str = "in-process"
) -> AsyncIterator[procrastinate.App]:
    """Run a worker in this event loop for the duration of the block."""
    global _runtime
    _runtime = current
    app = build_app(current.database_url)
    async with app.open_async():
        task = asyncio.create_task(
            app.run_worker_async(concurrency=concurrency, name=name, install_signal_handlers=False)
        )
        try:
            yield app
        finally:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                log.debug("worker stopped")


async def run_forever(concurrency: int) -> None:
    """The `worker` command: until SIGTERM/SIGINT, after which running jobs finish (or
    are retried by another worker when this process dies) — never half-applied, since
    each job's effects commit in its own transactions."""
    from handwork_payments.startup import started_runtime

    global _runtime
    async with started_runtime() as current:
        _runtime = current
        app = build_app(current.database_url)
        async with app.open_async():
            await app.run_worker_async(concurrency=concurrency, install_signal_handlers=True)
