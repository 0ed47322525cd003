"""Steps the flow suites share: read a payment as a party sees it, and a PayPal payment
taken through create, approval and execute to held."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, Party


async def payment_of(api: Api, party: Party, payment_id: int) -> dict[str, Any]:
    result: dict[str, Any] = await api.get(f"/payments/{payment_id}", party)
    return result


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
