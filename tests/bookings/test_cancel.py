"""Cancelling a paid booking, end to end over HTTP on the built-in simulators, with exact
amounts. The ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from tests.helpers import Api
from tests.payments.flows import payment_of


async def test_cancelling_a_paid_booking_refunds_it_in_full(api: Api) -> None:
    client, pro, payment = await api.held_payment("70.00")
    r = await api.post(f"/bookings/{payment['booking_id']}/cancel", pro)
    assert r.status_code == 403
    r = await api.post(f"/bookings/{payment['booking_id']}/cancel", client)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    final = await payment_of(api, client, payment["id"])
    assert final["status"] == "refunded" and final["refunded_amount"] == "70.00"
    assert (await api.earnings(pro))["pending_balance"] == "0.00"
