"""Helpers for the background-work tests: the simulators, rows as they are now, and a
worker with money to pay out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from handwork_payments.models import AuditLog, Payment, SimulatedObject, WorkerPayout
from handwork_payments.providers.simulated import SimulatedProvider
from handwork_payments.runtime import Runtime
from tests.helpers import Api, Party


def simulator(runtime: Runtime, name: str = "stripe") -> SimulatedProvider:
    provider = runtime.providers.for_method(name)
    assert isinstance(provider, SimulatedProvider)
    return provider


async def payment_row(runtime: Runtime, payment_id: int) -> Payment:
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment


async def payout_row(runtime: Runtime, payout_id: int) -> WorkerPayout:
    async with runtime.sessions() as session:
        payout = await session.get(WorkerPayout, payout_id)
        assert payout is not None
        return payout


async def audit_actions(runtime: Runtime, object_type: str, object_id: int) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(AuditLog.action)
            .where(AuditLog.object_type == object_type, AuditLog.object_id == object_id)
            .order_by(AuditLog.id)
        )
        return list(rows.all())


async def provider_objects(runtime: Runtime, provider: str, kind: str, **contains: Any) -> int:
    """How many objects of `kind` the simulator holds, whose JSON contains `contains`."""
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(SimulatedObject)
            .where(
                SimulatedObject.provider == provider,
                SimulatedObject.kind == kind,
                SimulatedObject.data.contains(contains),
            )
        )
        return int(count or 0)


async def earner(api: Api, amount: str = "100.00") -> tuple[Party, Party]:
    """A worker with a released payment of `amount` (its share available) and both payout
    methods set, and an admin."""
    client, worker, payment = await api.held_payment(amount)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={
            "stripe_account_id": f"acct_1Worker{worker.id}",
            "paypal_email": f"w{worker.id}@example.com",
        },
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    return worker, await api.admin()


async def requested(api: Api, worker: Party, amount: str, method: str) -> dict[str, Any]:
    r = await api.post(
        "/payments/payouts/request", worker, {"amount": amount, "payment_method": method}
    )
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result
