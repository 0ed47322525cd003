"""Provider fees and platform losses in the ledger, to the minor unit, on the simulators
(Stripe 2.9% + 30c, 3.6% in JPY, + 90 fils in KWD; PayPal 3.49% + 49c, + 49 yen; Stripe's
dispute fee $15). Balances are the accounts' own; `ledger verify` (conftest) checks the new
invariants after each test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from handwork_payments.kit.clock import now
from handwork_payments.models import LedgerAccount, Payment
from handwork_payments.providers.base import StatementKind
from handwork_payments.providers.simulated.stripe import SimulatedStripe
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.faults import payment_row, simulator
from tests.helpers import Api, eventually
from tests.payments.flows import paypal_held


async def balances(runtime: Runtime, currency: str) -> dict[str, int]:
    """Every non-escrow, non-worker account of `currency` by its code's kind (and provider)."""
    async with runtime.sessions() as session:
        rows = (
            await session.scalars(select(LedgerAccount).where(LedgerAccount.currency == currency))
        ).all()
    found: dict[str, int] = {}
    for row in rows:
        if row.kind in ("escrow", "worker_available", "worker_payout_reserved"):
            continue
        name = row.code.rsplit(":", 1)[0]
        found[name] = found.get(name, 0) + row.balance
    return found


def net(found: dict[str, int]) -> int:
    """fee revenue - provider fees - losses: the expense accounts carry negative balances."""
    return sum(v for k, v in found.items() if not k.startswith("provider_clearing"))


async def test_stripe_usd_fee_booked_at_capture_and_kept_on_refund(api: Api) -> None:
    client, _, payment = await api.held_payment("150.00")
    # Only authorised: Stripe charges nothing yet.
    assert await balances(api.runtime, "USD") == {"provider_clearing:stripe": -15000}
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # 2.9% of 150.00 = 4.35, + 0.30 = 4.65, kept by Stripe out of what it holds for us.
    assert (await payment_row(api.runtime, payment["id"])).provider_fee == 465
    found = await balances(api.runtime, "USD")
    assert found == {
        "provider_clearing:stripe": -14535,
        "provider_fees:stripe": -465,
        "platform_fee_revenue": 750,
    }
    assert net(found) == 285
    admin = await api.admin()
    r = await api.post(
        "/payments/refund", admin, {"payment_id": payment["id"], "amount": "50.00", "reason": "r"}
    )
    assert r.status_code == 200, r.text
    # Stripe returns none of its fee: the refund moves 50.00 and the fee revenue's share.
    found = await balances(api.runtime, "USD")
    assert found == {
        "provider_clearing:stripe": -9535,
        "provider_fees:stripe": -465,
        "platform_fee_revenue": 500,
    }
    assert net(found) == 35


async def test_stripe_jpy_full_refund_after_release_costs_the_fee(api: Api) -> None:
    client, _, payment = await api.held_payment("10000", "JPY")
    await api.post(f"/payments/{payment['id']}/release", client)
    admin = await api.admin()
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "r"})
    assert r.status_code == 200 and r.json()["status"] == "refunded", r.text
    # 3.6% of 10000 yen = 360 yen, not returned; the platform fee (500) is refunded.
    found = await balances(api.runtime, "JPY")
    assert found == {
        "provider_clearing:stripe": 360,
        "provider_fees:stripe": -360,
        "platform_fee_revenue": 0,
    }
    assert net(found) == -360


async def test_refund_of_an_authorisation_costs_no_fee(api: Api) -> None:
    _, pro, payment = await api.held_payment("80.00")
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "r"})
    assert r.status_code == 200, r.text
    assert await balances(api.runtime, "USD") == {"provider_clearing:stripe": 0}
    assert (await payment_row(api.runtime, payment["id"])).provider_fee is None


async def test_paypal_usd_fee_on_the_capture_of_what_is_left(api: Api) -> None:
    client, pro, payment = await paypal_held(api)
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "50.00", "reason": "x"}
    )
    assert r.status_code == 200, r.text
    await api.post(f"/payments/{payment['id']}/release", client)
    # 100.00 captured: 3.49% = 3.49, + 0.49 = 3.98.
    found = await balances(api.runtime, "USD")
    assert found == {
        "provider_clearing:paypal": -9602,
        "provider_fees:paypal": -398,
        "platform_fee_revenue": 500,
    }
    assert net(found) == 102


async def test_stripe_kwd_fee_and_a_full_refund_after_release(api: Api) -> None:
    # Stripe takes KWD amounts ending in 0 (providers/currencies.py); PayPal takes no KWD.
    client, _, payment = await api.held_payment("12.340", "KWD")
    await api.post(f"/payments/{payment['id']}/release", client)
    # 2.9% of 12.340 = 0.35786 -> 0.358, + 0.090 = 0.448 KWD; platform fee 5% = 0.617.
    assert (await payment_row(api.runtime, payment["id"])).provider_fee == 448
    admin = await api.admin()
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "r"})
    assert r.status_code == 200, r.text
    found = await balances(api.runtime, "KWD")
    assert found == {
        "provider_clearing:stripe": 448,
        "provider_fees:stripe": -448,
        "platform_fee_revenue": 0,
    }


async def test_paypal_jpy_fee_and_a_full_refund_after_release(api: Api) -> None:
    client, _, payment = await paypal_held_in(api, "10000", "JPY")
    await api.post(f"/payments/{payment['id']}/release", client)
    # 3.49% of 10000 yen = 349, + 49 = 398 yen; platform fee 5% = 500.
    assert (await payment_row(api.runtime, payment["id"])).provider_fee == 398
    admin = await api.admin()
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "r"})
    assert r.status_code == 200, r.text
    found = await balances(api.runtime, "JPY")
    assert found == {
        "provider_clearing:paypal": 398,
        "provider_fees:paypal": -398,
        "platform_fee_revenue": 0,
    }


async def paypal_held_in(api: Api, amount: str, currency: str) -> tuple[Any, Any, dict[str, Any]]:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, amount, currency)
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": amount,
            "currency": currency,
            "return_url": "https://app.example.com/ok",
            "cancel_url": "https://app.example.com/no",
        },
    )
    assert r.status_code == 201, r.text
    approval = (await api.client.get(r.json()["approval_url"])).json()
    r = await api.post(
        "/payments/paypal/execute",
        client,
        {
            "payment_id": r.json()["paypal_payment_id"],
            "payer_id": approval["payer_id"],
            "booking_id": booking["id"],
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "held", r.text
    return client, pro, r.json()


async def test_a_capture_webhook_books_the_fee_once(api: Api) -> None:
    client, _, payment = await api.held_payment("20.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    sim = simulator(api.runtime)
    assert isinstance(sim, SimulatedStripe)
    intent = await sim.intent_object(payment["stripe_payment_id"])
    body, headers = sim.stripe_event("payment_intent.succeeded", intent)
    stored, _ = await webhooks.receive(api.runtime, "stripe", headers, body)
    assert stored is not None
    await webhooks.process(api.runtime, stored.id)
    # 2.9% of 20.00 = 0.58, + 0.30: once, whoever told us first.
    assert (await balances(api.runtime, "USD"))["provider_fees:stripe"] == -88


async def dispute(sim: SimulatedStripe, payment: Payment, status: str, fees: list[int]) -> Any:
    return {
        "id": f"du_{payment.id}",
        "object": "dispute",
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "payment_intent": payment.stripe_payment_id,
        "charge": payment.provider_capture_id,
        "reason": "fraudulent",
        "status": status,
        "balance_transactions": [
            {"id": f"txn_{i}", "object": "balance_transaction", "fee": fee}
            for i, fee in enumerate(fees)
        ],
    }


async def send(api: Api, sim: SimulatedStripe, event_type: str, obj: Any) -> None:
    body, headers = sim.stripe_event(event_type, obj)
    stored, _ = await webhooks.receive(api.runtime, "stripe", headers, body)
    assert stored is not None
    processed = await webhooks.process(api.runtime, stored.id)
    assert processed is not None and processed.last_error is None, processed.last_error


async def test_dispute_fee_is_a_loss_returned_when_won(api: Api) -> None:
    client, _, payment = await api.held_payment("40.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    sim = simulator(api.runtime)
    assert isinstance(sim, SimulatedStripe)
    opened = await sim.open_dispute(payment["stripe_payment_id"])
    await send(api, sim, "charge.dispute.created", opened)
    assert (await balances(api.runtime, "USD"))["platform_losses"] == -1500
    await send(api, sim, "charge.dispute.closed", await sim.close_dispute(opened["id"], won=True))
    found = await balances(api.runtime, "USD")
    # 40.00: Stripe fee 1.16 + 0.30 = 1.46; platform fee 2.00; the dispute fee came back.
    assert found == {
        "provider_clearing:stripe": -3854,
        "provider_fees:stripe": -146,
        "platform_fee_revenue": 200,
        "platform_losses": 0,
    }
    lines = await sim.statement(now() - timedelta(hours=1), now() + timedelta(seconds=5))
    assert sorted((x.kind, x.amount, x.fee) for x in lines if x.reference == opened["id"]) == [
        (StatementKind.DISPUTE, -4000, 1500),
        (StatementKind.DISPUTE, 4000, -1500),
    ]


async def test_chargeback_lost_on_a_refunded_payment_is_the_platforms_loss(api: Api) -> None:
    client, _, payment = await api.held_payment("40.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    admin = await api.admin()
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "r"})
    assert r.status_code == 200, r.text
    sim = simulator(api.runtime)
    assert isinstance(sim, SimulatedStripe)
    row = await payment_row(api.runtime, payment["id"])
    await send(
        api, sim, "charge.dispute.created", await dispute(sim, row, "needs_response", [1500])
    )
    await send(api, sim, "charge.dispute.closed", await dispute(sim, row, "lost", [1500]))
    found = await balances(api.runtime, "USD")
    # Refunded (40.00) and taken again by the bank (40.00), the dispute fee, Stripe's fee.
    assert found == {
        "provider_clearing:stripe": 4000 + 1500 + 146,
        "provider_fees:stripe": -146,
        "platform_fee_revenue": 0,
        "platform_losses": -5500,
    }
    assert net(found) == -5646


async def test_an_admin_writes_off_a_workers_debt(api: Api, worker: None) -> None:
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"paypal_email": "pro@example.com"},
        headers=pro.headers,
    )
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "95.00", "payment_method": "paypal"}
    )
    admin = await api.admin()
    await api.post(f"/payments/payouts/{r.json()['id']}/process", admin)

    async def paid() -> bool:
        return (await api.earnings(pro))["total_paid_out"] == "95.00"

    await eventually(paid)
    await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "r"})
    assert (await api.earnings(pro))["available_balance"] == "-95.00"

    r = await api.post(f"/admin/users/{pro.id}/write-off", pro, {"reason": "mine"})
    assert r.status_code == 403
    r = await api.post(f"/admin/users/{client.id}/write-off", admin, {"reason": "x"})
    assert r.status_code == 404
    r = await api.post(f"/admin/users/{pro.id}/write-off", admin, {"reason": "Unrecoverable"})
    assert r.status_code == 201, r.text
    assert (r.json()["amount"], r.json()["currency"]) == ("95.00", "USD")
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    assert (await balances(api.runtime, "USD"))["platform_losses"] == -9500
    r = await api.post(f"/admin/users/{pro.id}/write-off", admin, {"reason": "again"})
    assert r.status_code == 409
