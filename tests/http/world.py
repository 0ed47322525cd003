"""The parties and objects the HTTP suites act on: the bad-input corpus's world (users of
every role; an unpaid booking, a held, a disputed and a released payment; a dispute under
review; a pending and a processing payout; a PayPal order; an unprocessed webhook delivery)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from handwork_payments.app import create_app
from handwork_payments.runtime import Runtime
from tests.conftest import empty_tables
from tests.http.test_validation import World, build_world


@asynccontextmanager
async def seeded(runtime: Runtime) -> AsyncIterator[World]:
    """Empty tables, an app on the test's runtime, and the world built through its API."""
    await empty_tables(runtime)
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        world = await build_world(http, runtime)
        world.openapi = app.openapi()
        yield world
