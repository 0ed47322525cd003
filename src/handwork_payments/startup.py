"""Bringing a process up from the environment: database (embedded when DATABASE_URL is
unset), migrations, the first admin, the in-process worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from handwork_payments import migrate
from handwork_payments.auth.service import ensure_admin
from handwork_payments.db import database_url
from handwork_payments.runtime import Runtime
from handwork_payments.settings import get_settings

log = logging.getLogger(__name__)

# Set by `serve --no-worker`.
run_in_process_worker = True


@asynccontextmanager
async def started_runtime() -> AsyncIterator[Runtime]:
    settings = get_settings()
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
            if run_in_process_worker:
                from handwork_payments.worker import running_worker

                await stack.enter_async_context(running_worker(runtime))
            log.info("providers: %s", runtime.providers.modes())
            yield runtime
    finally:
        await runtime.aclose()
