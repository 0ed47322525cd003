"""The simulators' own lookups stay index reads as their table grows: every simulated call
looks for an injected fault first, so a sequential scan there costs every payment a read of
every object the simulator ever made (issue 11: half the database's CPU of an escrow flow
at 30,000 objects)."""

from __future__ import annotations

import json

from sqlalchemy import text

from handwork_payments.providers.simulated import store
from handwork_payments.runtime import Runtime

OBJECTS = 5_000


async def test_the_fault_lookup_reads_an_index_not_the_table(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO simulated_objects (id, provider, kind, data) "
                "SELECT 'ch_' || g, 'stripe', 'charge', jsonb_build_object('amount', g) "
                "FROM generate_series(1, :n) AS g"
            ),
            {"n": OBJECTS},
        )
    async with runtime.sessions() as session:
        await session.execute(text("ANALYZE simulated_objects"))
        params = {
            "provider": "stripe",
            "kind": store.FAULT,
            "operation": json.dumps({"operation": "create_hold"}),
        }
        plan = "\n".join(
            (await session.execute(text(f"EXPLAIN {store._TAKE_FAULT.text}"), params)).scalars()
        )
        await session.rollback()
    assert "ix_simulated_objects_provider_kind" in plan, plan
    assert "Seq Scan on simulated_objects" not in plan, plan
