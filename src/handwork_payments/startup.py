"""Bringing a process up from the environment: the production checks, the database
(embedded when DATABASE_URL is unset), migrations, the first admin, the in-process worker."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from sqlalchemy.engine import make_url

from handwork_payments import migrate
from handwork_payments.auth.service import ensure_admin
from handwork_payments.db import database_url, embedded_dir, libpq_url
from handwork_payments.providers import provider_modes
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings, get_settings

log = logging.getLogger(__name__)

# False in `worker` processes (they are workers already).
run_in_process_worker = True
# Set by `serve` for its children: "none" (--no-worker) or "elected" (the one process of
# `--workers N` that wins IN_PROCESS_WORKER_LOCK runs it). Unset: this process runs one.
IN_PROCESS_WORKER_ENV = "HANDWORK_IN_PROCESS_WORKER"
# An advisory lock key of our own ("hwpw" in ASCII), held by the elected process's
# connection for its life: a child that dies releases it and its replacement takes it.
IN_PROCESS_WORKER_LOCK = 0x68777077

# HS256 wants a key at least as long as its hash (RFC 7518 3.2).
MIN_JWT_SECRET_BYTES = 32


class StartupRefused(Exception):
    """Production settings that would simulate money or generate secrets per process."""


def refusals(settings: Settings) -> list[str]:
    """What HANDWORK_ENV=production refuses in these settings (nothing elsewhere)."""
    if not settings.production:
        return []
    problems = [
        f"{name} would be simulated (set its credentials, or leave the other provider's unset)"
        for name, mode in provider_modes(settings).items()
        if mode == "simulated"
    ]
    if len((settings.jwt_secret or "").encode()) < MIN_JWT_SECRET_BYTES:
        problems.append(f"JWT_SECRET must be set, at least {MIN_JWT_SECRET_BYTES} bytes")
    if not settings.metadata_encryption_keys:
        problems.append("METADATA_ENCRYPTION_KEYS must be set")
    return problems


def check_deployable(settings: Settings) -> None:
    problems = refusals(settings)
    if problems:
        raise StartupRefused("HANDWORK_ENV=production refuses to start: " + "; ".join(problems))


def generated_secrets(settings: Settings) -> list[str]:
    """The secrets this process made up because they are not set."""
    found = []
    if not settings.jwt_secret:
        found.append(
            "JWT_SECRET is not set: tokens are signed with a generated key and stop working "
            "when this process restarts"
        )
    if not settings.metadata_encryption_keys:
        found.append(
            "METADATA_ENCRYPTION_KEYS is not set: payment_metadata is encrypted with a "
            "generated key, unreadable after a restart"
        )
    return found


def banner(settings: Settings, url: str, host: str, port: int) -> str:
    """What a person starting `serve` needs to see, in a few lines (printed once, by the
    process that starts the others)."""
    base = f"http://{host}:{port}"
    folder = embedded_dir()
    database = (
        f"embedded PostgreSQL, data in {folder}"
        if folder is not None and settings.database_url is None
        else make_url(url).render_as_string(hide_password=True)
    )
    modes = provider_modes(settings)
    lines = [
        f"Handwork Payments on {base}",
        f"  dashboard  {base}/dashboard",
        f"  API docs   {base}/docs" if settings.serve_docs else "  API docs   off",
        f"  metrics    {base}/metrics",
        f"  database   {database}",
        "  providers  " + ", ".join(f"{n} {m}" for n, m in modes.items()),
        *(f"  WARNING    {w}" for w in generated_secrets(settings)),
    ]
    if settings.log_level == "warning":
        lines.append("Only warnings from now on (LOG_LEVEL=info for more).")
    return "\n".join(lines)


@asynccontextmanager
async def started_runtime() -> AsyncIterator[Runtime]:
    settings = get_settings()
    check_deployable(settings)
    url = database_url(settings)
    await asyncio.to_thread(migrate.upgrade, url)
    runtime = Runtime.build(settings, url)
    try:
        if settings.first_admin_email and settings.first_admin_password:
            await ensure_admin(
                runtime,
                email=settings.first_admin_email,
                password=settings.first_admin_password,
                full_name="Administrator",
            )
        async with AsyncExitStack() as stack:
            if await _runs_worker(stack, url):
                from handwork_payments.worker import running_worker

                await stack.enter_async_context(running_worker(runtime))
            log.info("providers: %s", runtime.providers.modes())
            yield runtime
    finally:
        await runtime.aclose()


async def _runs_worker(stack: AsyncExitStack, url: str) -> bool:
    """Whether this process runs the in-process worker: exactly one of `serve --workers
    N`'s processes does, the one whose connection takes the advisory lock first."""
    mode = os.environ.get(IN_PROCESS_WORKER_ENV, "always") if run_in_process_worker else "none"
    if mode != "elected":
        return mode != "none"
    import psycopg

    conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
    row = await (
        await conn.execute("SELECT pg_try_advisory_lock(%s)", (IN_PROCESS_WORKER_LOCK,))
    ).fetchone()
    if not (row and row[0]):
        await conn.close()
        return False
    stack.push_async_callback(conn.close)
    log.info("this process runs the in-process worker")
    return True
