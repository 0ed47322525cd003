"""Enqueueing procrastinate jobs inside our own transaction: the job exists exactly when
the state change that causes it commits (no job for a rolled-back change, no change
without its job)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_QUEUE = "default"


def defer_sql(*, lock: str, args: str) -> str:
    """procrastinate's own defer function as an SQL expression (the job's id), with the
    parameters :queue, :task and :at, and `lock` and `args` SQL expressions of the
    caller's statement: a row and the job it causes inserted in one round trip (WITH
    row AS (INSERT ... RETURNING id) SELECT <this> FROM row)."""
    return (
        f"(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, 0, {lock}, NULL, {args},"
        " :at)::procrastinate_job_to_defer_v1]))[1]"
    )


_DEFER = text("SELECT " + defer_sql(lock=":lock", args="CAST(:args AS jsonb)"))


async def defer(
    session: AsyncSession,
    task_name: str,
    *,
    args: dict[str, Any],
    scheduled_at: datetime | None = None,
    lock: str | None = None,
    queue: str = DEFAULT_QUEUE,
) -> int:
    """Insert a job through procrastinate's own SQL function, in `session`'s transaction.
    `lock` serialises jobs that act on one object (procrastinate runs one at a time)."""
    job_id: int = (
        await session.execute(
            _DEFER,
            {
                "queue": queue,
                "task": task_name,
                "lock": lock,
                "args": json.dumps(args),
                "at": scheduled_at,
            },
        )
    ).scalar_one()
    return job_id
