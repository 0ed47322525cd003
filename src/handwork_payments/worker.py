"""Background work on procrastinate, in the same PostgreSQL as the money.

Each domain keeps its tasks in its own `tasks.py` on a Blueprint; this module gathers them
into one procrastinate App. Tasks reach the process's Runtime through `runtime.current_runtime()`.

Any number of worker processes, on any hosts, share one database: procrastinate hands a
job to one worker at a time (SELECT ... FOR UPDATE SKIP LOCKED), periodic jobs are
deferred once per tick whoever defers them (a unique row per task and tick), and every
task re-checks its object's state under a row lock, so a job that runs again changes
nothing twice.

Stopping, and dying:
- SIGTERM / SIGINT (procrastinate's handler): the worker takes no new job, lets the
  running ones finish for up to WORKER_SHUTDOWN_GRACE_SECONDS, then cancels them; a
  cancelled job is marked aborted and retried by its retry strategy (every task here has
  one). A second signal kills the process at once.
- SIGKILL, a crash, a lost host: the worker's heartbeat (WORKER_HEARTBEAT_SECONDS) stops.
  Once it is older than WORKER_STALLED_SECONDS, `retry_stalled_jobs` (a periodic job that
  every worker may run, every WORKER_STALLED_SWEEP_SECONDS) puts the dead worker's jobs
  back in the queue. A job is never half-applied either way: each of its steps commits in
  its own transaction, and the provider calls between them carry idempotency keys.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import procrastinate
from procrastinate.job_context import JobContext

from handwork_payments.db import libpq_url
from handwork_payments.runtime import Runtime, current_runtime, set_current_runtime
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)

# Finished jobs are kept this long for inspection, then deleted (failed ones are kept).
KEEP_FINISHED_JOBS_HOURS = 7 * 24

maintenance = procrastinate.Blueprint()


# procrastinate's own retry (the job back to `todo`, an event, a NOTIFY), only while the
# job is still `doing` on the worker it was found stalled on: two sweeps that both saw it
# stalled must not put it back twice, the second time while a live worker runs it.
_RETRY_IF_STILL_STALLED = """
    WITH still AS (
        SELECT id FROM procrastinate_jobs
        WHERE id = %(job_id)s AND status = 'doing'
          AND worker_id IS NOT DISTINCT FROM %(worker_id)s::bigint
        FOR UPDATE
    )
    SELECT procrastinate_retry_job_v2(id, now(), NULL, NULL, NULL) FROM still
"""


@maintenance.task(name="retry_stalled_jobs", pass_context=True, queueing_lock="stalled-jobs")
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> None:
    """Put the running jobs of dead workers (no heartbeat for WORKER_STALLED_SECONDS) back
    in the queue, as procrastinate's documentation recommends, as a periodic job. No job
    lock: a sweep running on a worker that dies would hold it, and block every later one."""
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(
        seconds_since_heartbeat=current_runtime().settings.worker_stalled_seconds
    )
    for job in stalled:
        retried = await context.app.connector.execute_query_all_async(
            _RETRY_IF_STILL_STALLED, job_id=job.id, worker_id=job.worker_id
        )
        if retried:
            log.warning(
                "job %s (%s) was running on a dead worker: retried",
                job.id,
                job.task_name,
                extra={"event": "job_stalled", "job_id": job.id, "task": job.task_name},
            )


@maintenance.periodic(cron="17 4 * * *")
@maintenance.task(name="prune_jobs", pass_context=True, queueing_lock="prune-jobs")
async def prune_jobs(context: JobContext, timestamp: int) -> None:
    """Delete jobs that succeeded or were cancelled long ago (failed ones stay)."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=KEEP_FINISHED_JOBS_HOURS, include_cancelled=True
    )


def blueprints() -> list[procrastinate.Blueprint]:
    from handwork_payments.audit.tasks import blueprint as audit
    from handwork_payments.disputes.tasks import blueprint as disputes
    from handwork_payments.events.tasks import blueprint as events
    from handwork_payments.http.tasks import blueprint as housekeeping
    from handwork_payments.payments.tasks import blueprint as payments
    from handwork_payments.payouts.tasks import blueprint as payouts
    from handwork_payments.privacy.tasks import blueprint as privacy
    from handwork_payments.reconcile.tasks import blueprint as reconcile
    from handwork_payments.recurring.tasks import blueprint as recurring
    from handwork_payments.webhooks.tasks import blueprint as webhooks

    return [
        maintenance,
        payments,
        payouts,
        webhooks,
        reconcile,
        housekeeping,
        audit,
        privacy,
        events,
        recurring,
        disputes,
    ]


def sweep_cron(seconds: int) -> str:
    """Cron for "every `seconds`": a 6th (seconds) column below a minute."""
    if seconds < 60:
        return f"* * * * * */{seconds}"
    return f"*/{seconds // 60} * * * *"


@functools.cache
def build_app(database_url: str, stalled_sweep_seconds: int = 60) -> procrastinate.App:
    """One App per database and process: adding a blueprint to an App renames its tasks
    in place (the namespace), so the blueprints can be added only once."""
    assert build_app.cache_info().currsize == 0, "one procrastinate App per process"
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(database_url))
    )
    for blueprint in blueprints():
        app.add_tasks_from(blueprint, namespace="hp")
    app.periodic(cron=sweep_cron(stalled_sweep_seconds))(app.tasks["hp:retry_stalled_jobs"])
    return app


def app_for(current: Runtime) -> procrastinate.App:
    return build_app(current.database_url, current.settings.worker_stalled_sweep_seconds)


def worker_options(settings: Settings) -> dict[str, Any]:
    return {
        "fetch_job_polling_interval": settings.worker_poll_seconds,
        "update_heartbeat_interval": settings.worker_heartbeat_seconds,
        "stalled_worker_timeout": settings.worker_stalled_seconds,
        "shutdown_graceful_timeout": settings.worker_shutdown_grace_seconds,
    }


@asynccontextmanager
async def running_worker(
    current: Runtime, *, concurrency: int = 4, name: str = "in-process"
) -> AsyncIterator[procrastinate.App]:
    """Run a worker in this event loop for the duration of the block. Leaving the block
    stops it as SIGTERM would: running jobs get the grace period to finish."""
    set_current_runtime(current)
    app = app_for(current)
    async with app.open_async():
        task = asyncio.create_task(
            app.run_worker_async(
                concurrency=concurrency,
                name=name,
                install_signal_handlers=False,
                **worker_options(current.settings),
            )
        )
        task.add_done_callback(_report_death)
        try:
            yield app
        finally:
            task.remove_done_callback(_report_death)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                log.debug("worker stopped")
            except Exception:
                log.exception("the in-process worker had failed")


def _report_death(task: asyncio.Task[None]) -> None:
    """The in-process worker ended on its own: no background job runs any more here."""
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the in-process worker stopped: no job runs in this process",
            exc_info=task.exception(),
            extra={"event": "worker_died"},
        )


async def run_until_idle(current: Runtime, *, concurrency: int = 4) -> None:
    """Run the jobs that are due and return once none is left (benchmarks, maintenance)."""
    set_current_runtime(current)
    app = app_for(current)
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency,
            name="until-idle",
            wait=False,
            install_signal_handlers=False,
            **worker_options(current.settings),
        )


async def run_forever(current: Runtime, concurrency: int, name: str = "worker") -> None:
    """The `worker` command, on a runtime the command started: until SIGTERM/SIGINT (see
    the module's docstring)."""
    set_current_runtime(current)
    app = app_for(current)
    async with app.open_async():
        log.info(
            "worker %s: concurrency %d, providers %s",
            name,
            concurrency,
            current.providers.modes(),
        )
        await app.run_worker_async(
            concurrency=concurrency,
            name=name,
            install_signal_handlers=True,
            **worker_options(current.settings),
        )
