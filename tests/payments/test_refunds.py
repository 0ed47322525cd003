"""SPEC.md's refund flows end to end over HTTP, on the built-in simulators, with exact
amounts. The ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from tests.helpers import Api, eventually
from tests.payments.flows import paypal_held


async def test_paypal_payment_refunded_in_part_then_released(api: Api) -> None:
    client, pro, payment = await paypal_held(api)
    assert payment["payment_method"] == "paypal"
    admin = await api.admin()

    r = await api.post(
        "/payments/refund",
        pro,
        {"payment_id": payment["id"], "amount": "50.00", "reason": "Less work"},
    )
    assert r.status_code == 200, r.text
    refunded = r.json()
    assert refunded["status"] == "held"
    assert refunded["refunded_amount"] == "50.00"
    assert refunded["refund_reason"] == "Less work"
    # The worker's share still in escrow: 142.50 less the worker part of the refund (47.50).
    assert (await api.earnings(pro))["pending_balance"] == "95.00"

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # 100.00 released: 5% fee 5.00 (7.50 less 2.50 returned pro rata), worker 95.00.
    assert (await api.earnings(pro))["available_balance"] == "95.00"
    fees = (await api.get("/payments/transactions", admin))["items"]
    assert [t["amount"] for t in fees] == ["5.00"]
    summary = await api.get("/payments/summary/client", client, currency="USD")
    assert summary["total_refunded"] == "50.00" and summary["total_released"] == "100.00"

    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "100.01", "reason": "x"}
    )
    assert r.status_code == 400


async def test_refunds_after_release_return_fee_pro_rata_and_add_up(api: Api) -> None:
    client, pro, payment = await api.held_payment("100.01")
    # 5% of 100.01 is 5.0005: rounded half up to 5.00; the worker gets 95.01.
    assert payment["platform_fee"] == "5.00" and payment["worker_amount"] == "95.01"
    await api.post(f"/payments/{payment['id']}/release", client)
    admin = await api.admin()
    for amount in ("33.33", "33.33", "33.35"):
        r = await api.post(
            "/payments/refund",
            admin,
            {"payment_id": payment["id"], "amount": amount, "reason": "r"},
        )
        assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "refunded" and final["refunded_amount"] == "100.01"
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    fees = [t["amount"] for t in (await api.get("/payments/transactions", admin))["items"]]
    # Fee parts: floor(3333*500/10001)=166, floor(6666*500/10001)=333 (167 more), 500 (167).
    assert fees == ["-1.67", "-1.67", "-1.66", "5.00"]
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "again"})
    assert r.status_code == 409


async def test_refund_after_payout_leaves_a_debt_that_later_earnings_pay(
    api: Api, worker: None
) -> None:
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
    assert r.status_code == 201, r.text
    admin = await api.admin()
    await api.post(f"/payments/payouts/{r.json()['id']}/process", admin)

    async def paid() -> bool:
        return (await api.earnings(pro))["total_paid_out"] == "95.00"

    await eventually(paid)
    r = await api.post(
        "/payments/refund", admin, {"payment_id": payment["id"], "reason": "Chargeback"}
    )
    assert r.status_code == 200 and r.json()["status"] == "refunded"
    assert (await api.earnings(pro))["available_balance"] == "-95.00"
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "0.01", "payment_method": "paypal"}
    )
    assert r.status_code == 400

    booking = await api.booking(client, pro, "200.00")
    second = (await api.stripe_payment(client, booking)).json()
    await api.post(f"/payments/{second['id']}/release", client)
    assert (await api.earnings(pro))["available_balance"] == "95.00"  # 190.00 - 95.00
