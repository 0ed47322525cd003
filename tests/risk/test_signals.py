"""The signals the rules compare: recorded at registration, login and payout-method
changes as keyed digests (never the address itself), and gone with an erased account."""

from __future__ import annotations

from sqlalchemy import select

from handwork_payments.models import RiskSignal, SignalKind
from handwork_payments.risk import signals
from handwork_payments.runtime import Runtime
from tests.helpers import Api
from tests.risk.flows import party


async def signals_of(runtime: Runtime, user_id: int) -> list[tuple[str, str]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            select(RiskSignal.kind, RiskSignal.digest)
            .where(RiskSignal.user_id == user_id)
            .order_by(RiskSignal.kind, RiskSignal.digest)
        )
        return [(str(kind), digest) for kind, digest in rows]


async def test_registration_login_and_payout_methods_leave_digests(
    api: Api, runtime: Runtime
) -> None:
    worker = await party(api, "worker", "192.0.2.44")
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"paypal_email": "Pay.Me@Example.com"},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    key = signals.runtime_key(runtime)
    expected = sorted(
        [
            ("destination", signals.digest(key, SignalKind.DESTINATION, worker.email)),
            (
                "destination",
                signals.digest(key, SignalKind.DESTINATION, "pay.me@example.com"),
            ),
            ("ip", signals.digest(key, SignalKind.IP, "192.0.2.44")),
        ]
    )
    found = await signals_of(runtime, worker.id)
    assert found == expected  # the login from the same address added nothing
    assert all("192.0.2.44" not in digest and len(digest) == 64 for _, digest in found)

    admin = await api.admin()
    assert (await api.post(f"/admin/users/{worker.id}/erase", admin)).status_code == 200
    assert await signals_of(runtime, worker.id) == []
