"""GET /admin/analytics over a known history, every figure exact: payments held, failed
and refunded on known days, fee revenue from the ledger, the simulator's provider fees
and a loss on their cost accounts, a dispute resolved in 30 hours and a payout completed
in 12."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from handwork_payments.db import transaction
from handwork_payments.ledger import repository as ledger_accounts
from handwork_payments.ledger import service as ledger
from handwork_payments.models import AccountKind
from handwork_payments.payouts import service as payouts
from handwork_payments.runtime import Runtime
from tests.faults import earner, requested
from tests.helpers import Api


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


async def _move(runtime: Runtime, table: str, column: str, when: datetime, where: str) -> None:
    async with transaction(runtime.sessions) as session:
        # Back-dating only: the ledger's append-only triggers would refuse it.
        await session.execute(text("SET LOCAL session_replication_role = replica"))
        await session.execute(
            text(f"UPDATE {table} SET {column} = :when WHERE {where}"), {"when": when}
        )


async def _book_loss(runtime: Runtime) -> None:
    """A loss of 1.00 on March 2nd, against the provider's clearing account. (Provider fees
    need no such help: the Stripe simulator charges 2.9% + 0.30 on every capture.)"""
    async with transaction(runtime.sessions) as session:
        clearing = await ledger.clearing(session, "stripe", "USD")
        losses = await ledger_accounts.get_or_create_account(
            session, "platform_losses:USD", AccountKind.PLATFORM_LOSSES, "USD", None
        )
        await ledger.post(
            session,
            key="test-loss",
            kind="test_loss",
            description="a loss",
            lines=[(clearing, 100), (losses, -100)],
        )
    await _move(runtime, "journal_entries", "created_at", at(2), "key = 'test-loss'")


async def _history(api: Api, runtime: Runtime) -> None:
    # P1: 100.00 held March 1st, released (fee 5.00) the same day; its worker is paid
    # 10.00, requested March 2nd noon and completed March 3rd midnight.
    worker, admin = await earner(api, "100.00")
    payout = await requested(api, worker, "10.00", "stripe")
    assert (await api.post(f"/payments/payouts/{payout['id']}/process", admin)).status_code == 200
    await payouts.send(runtime, payout["id"])
    # P2: 200.00 held and released March 2nd (fee 10.00); 40.00 refunded March 3rd, which
    # takes 2.00 of the fee back.
    client, _, p2 = await api.held_payment("200.00")
    assert (await api.post(f"/payments/{p2['id']}/release", client)).status_code == 200
    r = await api.post(
        "/payments/refund", admin, {"payment_id": p2["id"], "amount": "40.00", "reason": "Late"}
    )
    assert r.status_code == 200, r.text
    # P3: 50.00 held March 2nd, disputed March 2nd 10:00, released by the dispute's
    # resolution March 3rd 16:00 (fee 2.50).
    client3, _, p3 = await api.held_payment("50.00")
    r = await api.post(
        "/payments/disputes",
        client3,
        {"payment_id": p3["id"], "reason": "Unfinished", "description": "Half done"},
    )
    dispute = r.json()["id"]
    r = await api.post(
        f"/payments/disputes/{dispute}/resolve",
        admin,
        {"outcome": "release", "resolution_notes": "Done after all"},
    )
    assert r.status_code == 200, r.text
    # P4: declined March 3rd. P5: EUR, another currency. P6: held February 28th.
    c, w = await api.user("client"), await api.user("worker")
    declined = await api.stripe_payment(
        c, await api.booking(c, w, "70.00"), "pm_card_chargeDeclined"
    )
    assert declined.status_code == 402
    await api.held_payment("30.00", "EUR")
    _, _, p6 = await api.held_payment("80.00")

    for payment, created, held in (
        (1, at(1, 9), at(1, 10)),
        (p2["id"], at(2, 9), at(2, 10)),
        (p3["id"], at(2, 8), at(2, 9)),
        (p6["id"], None, None),
    ):
        if created is None:
            created = held = datetime(2026, 2, 28, 23, tzinfo=UTC)
        await _move(runtime, "payments", "created_at", created, f"id = {payment}")
        await _move(runtime, "payments", "held_at", held, f"id = {payment}")
    await _move(runtime, "payments", "created_at", at(3), "status = 'failed'")
    await _move(runtime, "payments", "created_at", at(2), "currency = 'EUR'")
    await _move(runtime, "payments", "held_at", at(2), "currency = 'EUR'")
    # Each release captures, and the capture's provider fee is booked with it: P1 3.20,
    # P2 6.10, P3 1.75 (2.9% + 0.30).
    for key, when in (
        ("payment-1-provider-fee", at(1, 11)),
        (f"payment-{p2['id']}-provider-fee", at(2)),
        (f"payment-{p3['id']}-provider-fee", at(3, 16)),
        ("payment-1-release", at(1, 11)),
        (f"payment-{p2['id']}-release", at(2)),
        (f"payment-{p2['id']}-refund-%", at(3)),
        (f"payment-{p3['id']}-release", at(3, 16)),
    ):
        await _move(runtime, "journal_entries", "created_at", when, f"key LIKE '{key}'")
    await _move(runtime, "payment_refunds", "completed_at", at(3), "true")
    await _move(runtime, "payment_disputes", "created_at", at(2, 10), "true")
    await _move(runtime, "payment_disputes", "resolved_at", at(3, 16), "true")
    await _move(runtime, "worker_payouts", "requested_at", at(2), "true")
    await _move(runtime, "worker_payouts", "completed_at", at(3, 0), "true")
    await _book_loss(runtime)


def _day(
    date: str,
    volume: str,
    fee: str,
    costs: tuple[str, str],
    net: str,
    payments: int,
    failed: int,
    refunded: str,
) -> dict[str, Any]:
    return {
        "date": date,
        "volume": volume,
        "fee_revenue": fee,
        "provider_fees": costs[0],
        "losses": costs[1],
        "net_revenue": net,
        "payments": payments,
        "failed": failed,
        "refunded": refunded,
    }


async def test_every_figure_of_a_known_history(api: Api, runtime: Runtime) -> None:
    await _history(api, runtime)
    admin = await api.admin()
    report = await api.get(
        "/admin/analytics", admin, **{"from": "2026-03-01", "to": "2026-03-03", "currency": "USD"}
    )
    assert report == {
        "currency": "USD",
        "from": "2026-03-01",
        "to": "2026-03-03",
        "payments": {"created": 4, "held": 3, "failed": 1, "success_rate": 0.75},
        "volume": "350.00",
        "fee_revenue": "15.50",
        "provider_fees": "11.05",
        "losses": "1.00",
        "net_revenue": "3.45",
        "refunded": "40.00",
        "disputes": {"opened": 1, "resolved": 1, "median_resolution_hours": 30.0},
        "payouts": {"requested": 1, "completed": 1, "failed": 0, "median_processing_hours": 12.0},
        "daily": [
            _day("2026-03-01", "100.00", "5.00", ("3.20", "0.00"), "1.80", 1, 0, "0.00"),
            _day("2026-03-02", "250.00", "10.00", ("6.10", "1.00"), "2.90", 2, 0, "0.00"),
            _day("2026-03-03", "0.00", "0.50", ("1.75", "0.00"), "-1.25", 0, 1, "40.00"),
        ],
    }
    # The day before holds only P6; EUR has its own figures.
    before = await api.get("/admin/analytics", admin, **{"from": "2026-02-28", "to": "2026-02-28"})
    assert before["payments"] == {"created": 1, "held": 1, "failed": 0, "success_rate": 1.0}
    assert before["volume"] == "80.00" and before["fee_revenue"] == "0.00"
    eur = await api.get(
        "/admin/analytics", admin, **{"from": "2026-03-01", "to": "2026-03-03", "currency": "EUR"}
    )
    assert eur["volume"] == "30.00" and eur["payments"]["held"] == 1


async def test_defaults_and_refusals(api: Api) -> None:
    admin = await api.admin()
    report = await api.get("/admin/analytics", admin)
    assert len(report["daily"]) == 30 and report["to"] == datetime.now(UTC).date().isoformat()
    assert report["payments"] == {"created": 0, "held": 0, "failed": 0, "success_rate": None}
    for params in (
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2024-01-01", "to": "2026-01-01"},
        {"from": "yesterday"},
        {"currency": "US"},
    ):
        r = await api.client.get("/api/v1/admin/analytics", params=params, headers=admin.headers)
        assert r.status_code == 422, (params, r.text)
        assert isinstance(r.json()["detail"], str)
    worker = await api.user("worker")
    r = await api.client.get("/api/v1/admin/analytics", headers=worker.headers)
    assert r.status_code == 403
