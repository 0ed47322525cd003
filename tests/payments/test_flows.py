"""SPEC.md's four flows end to end over HTTP, on the built-in simulators, with exact
amounts. The ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, Party, eventually


async def payment_of(api: Api, party: Party, payment_id: int) -> dict[str, Any]:
    result: dict[str, Any] = await api.get(f"/payments/{payment_id}", party)
    return result


async def test_card_payment_escrow_release_and_payout(api: Api, worker: None) -> None:
    client, pro, payment = await api.held_payment("150.00")
    assert payment["amount"] == "150.00"
    assert payment["platform_fee"] == "7.50"
    assert payment["worker_amount"] == "142.50"
    assert payment["stripe_payment_id"].startswith("pi_")
    assert payment["capture_by"] is not None

    earnings = await api.earnings(pro)
    assert earnings["pending_balance"] == "142.50"
    assert earnings["available_balance"] == "0.00"

    r = await api.post(f"/bookings/{payment['booking_id']}/complete", pro)
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (await payment_of(api, client, payment["id"]))["auto_release_at"] is not None

    r = await api.post(f"/payments/{payment['id']}/release", pro)
    assert r.status_code == 403  # only the client releases
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    released = r.json()
    assert released["status"] == "released"
    assert released["capture_by"] is None
    assert released["auto_release_at"] is None

    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "142.50"
    assert earnings["pending_balance"] == "0.00"
    assert earnings["total_earned"] == "142.50"

    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": "acct_1Worker"},
        headers=pro.headers,
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": 100, "payment_method": "stripe"}
    )
    assert r.status_code == 201, r.text
    payout = r.json()
    assert payout["status"] == "pending" and payout["amount"] == "100.00"
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "42.50"
    assert earnings["pending_payouts"] == "100.00"

    admin = await api.admin()
    r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processing"

    async def completed() -> dict[str, Any] | None:
        items = (await api.get("/payments/payouts", pro))["items"]
        return items[0] if items[0]["status"] == "completed" else None

    done = await eventually(completed)
    assert done["stripe_transfer_id"].startswith("tr_")
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "42.50"
    assert earnings["total_paid_out"] == "100.00"
    assert earnings["pending_payouts"] == "0.00"
    assert earnings["total_earned"] == "142.50"

    history = (await api.get("/payments/transactions", pro))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in history] == [
        ("payout", "-100.00"),
        ("earning", "142.50"),
    ]
    client_history = (await api.get("/payments/transactions", client))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in client_history] == [
        ("payment", "-150.00")
    ]
    fees = (await api.get("/payments/transactions", admin))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in fees] == [("fee", "7.50")]
    summary = await api.get("/payments/summary/client", client)
    assert summary == {
        "currency": "USD",
        "payment_count": 1,
        "total_spent": "150.00",
        "total_held": "0.00",
        "total_released": "150.00",
        "total_refunded": "0.00",
    }


async def test_declined_card_fails_the_payment_and_allows_another(api: Api) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "80.00")
    r = await api.stripe_payment(client, booking, "pm_card_chargeDeclined")
    assert r.status_code == 402
    assert "declined" in r.json()["detail"].lower()
    payments = (await api.get("/payments/", client))["items"]
    assert [p["status"] for p in payments] == ["failed"]
    assert (await api.get(f"/bookings/{booking['id']}", client))["status"] == "pending_payment"
    admin = await api.admin()
    alerts = (await api.get("/admin/alerts", admin))["items"]
    assert [a["kind"] for a in alerts] == ["payment_failed"]

    r = await api.stripe_payment(client, booking, "pm_card_visa")
    assert r.status_code == 201 and r.json()["status"] == "held"


async def test_three_d_secure_needs_the_extra_confirmation(api: Api) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "60.00")
    r = await api.stripe_payment(client, booking, "pm_card_authenticationRequired")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["client_secret"]
    confirm = {"payment_intent_id": created["stripe_payment_id"], "booking_id": booking["id"]}
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 402 and "authentication" in r.json()["detail"]

    r = await api.client.post(
        f"/api/v1/simulator/stripe/payment_intents/{created['stripe_payment_id']}/authenticate",
        json={"succeed": True},
    )
    assert r.status_code == 200, r.text
    r = await api.post("/payments/stripe/confirm", client, confirm)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held"


async def paypal_held(api: Api, amount: str = "150.00") -> tuple[Party, Party, dict[str, Any]]:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, amount)
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": amount,
            "currency": "usd",
            "return_url": "https://app.example.com/payment/success",
            "cancel_url": "https://app.example.com/payment/cancel",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["approval_url"]
    approval = await api.client.get(created["approval_url"])
    assert approval.status_code == 200, approval.text
    r = await api.post(
        "/payments/paypal/execute",
        client,
        {
            "payment_id": created["paypal_payment_id"],
            "payer_id": approval.json()["payer_id"],
            "booking_id": booking["id"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held"
    return client, pro, r.json()


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
    summary = await api.get("/payments/summary/client", client)
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


async def test_dispute_freezes_funds_and_a_split_resolves_it(api: Api) -> None:
    client, pro, payment = await api.held_payment("150.00")
    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": payment["id"], "reason": "Work not completed", "description": "Half done"},
    )
    assert r.status_code == 201, r.text
    dispute = r.json()
    assert dispute["status"] == "open" and dispute["initiated_by"] == client.id
    assert (await payment_of(api, client, payment["id"]))["status"] == "disputed"

    assert (await api.post(f"/payments/{payment['id']}/release", client)).status_code == 409
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 409
    r = await api.post(f"/payments/disputes/{dispute['id']}/review", client)
    assert r.status_code == 403

    admin = await api.admin()
    r = await api.post(f"/payments/disputes/{dispute['id']}/review", admin)
    assert r.status_code == 200 and r.json()["status"] == "under_review"
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "60.00", "resolution_notes": "Half the job"},
    )
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == admin.id
    final = await payment_of(api, client, payment["id"])
    assert final["status"] == "released" and final["refunded_amount"] == "60.00"
    # 90.00 released: fee 7.50 - 3.00 = 4.50, worker 142.50 - 57.00 = 85.50.
    assert (await api.earnings(pro))["available_balance"] == "85.50"
    fees = [t["amount"] for t in (await api.get("/payments/transactions", admin))["items"]]
    assert fees == ["4.50"]
    alerts = [a["kind"] for a in (await api.get("/admin/alerts", admin))["items"]]
    assert alerts == ["dispute_opened"]
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "60.00", "resolution_notes": "again"},
    )
    assert r.status_code == 409
    assert (await api.get("/payments/disputes", pro))["total"] == 1


async def test_dispute_resolved_by_full_refund_or_release(api: Api) -> None:
    admin = await api.admin()
    for outcome, status, available in (
        ("refund", "refunded", "0.00"),
        ("release", "released", "142.50"),
    ):
        client, pro, payment = await api.held_payment("150.00")
        dispute = (
            await api.post(
                "/payments/disputes",
                pro,
                {"payment_id": payment["id"], "reason": "Client unreachable", "description": "-"},
            )
        ).json()
        r = await api.post(
            f"/payments/disputes/{dispute['id']}/resolve",
            admin,
            {"outcome": outcome, "resolution_notes": "decided"},
        )
        assert r.status_code == 200, r.text
        assert (await payment_of(api, client, payment["id"]))["status"] == status
        assert (await api.earnings(pro))["available_balance"] == available


async def test_cancelling_a_paid_booking_refunds_it_in_full(api: Api) -> None:
    client, pro, payment = await api.held_payment("70.00")
    r = await api.post(f"/bookings/{payment['booking_id']}/cancel", pro)
    assert r.status_code == 403
    r = await api.post(f"/bookings/{payment['booking_id']}/cancel", client)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    final = await payment_of(api, client, payment["id"])
    assert final["status"] == "refunded" and final["refunded_amount"] == "70.00"
    assert (await api.earnings(pro))["pending_balance"] == "0.00"


async def test_card_confirmed_in_the_browser_arrives_by_signed_webhook(
    api: Api, worker: None
) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "42.00")
    r = await api.stripe_payment(client, booking, payment_method=None)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "pending" and created["client_secret"].startswith(
        created["stripe_payment_id"]
    )

    r = await api.client.post(
        f"/api/v1/simulator/stripe/payment_intents/{created['stripe_payment_id']}/confirm",
        json={"payment_method": "pm_card_visa"},
    )
    assert r.status_code == 200, r.text

    async def held() -> bool:
        return (await payment_of(api, client, created["id"]))["status"] == "held"

    await eventually(held)
    admin = await api.admin()
    deliveries = (await api.get("/admin/webhooks", admin))["items"]
    assert [(d["event_type"], d["status"]) for d in deliveries] == [
        ("payment_intent.amount_capturable_updated", "processed")
    ]
