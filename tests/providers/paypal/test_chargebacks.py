"""PayPal for real, money taken back at PayPal: chargebacks won and lost (before and
after release), refunds and capture reversals made outside our API, each recorded once.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from handwork_payments.kit.clock import now
from handwork_payments.models import PaymentDispute, PaymentRefund, WebhookDelivery
from handwork_payments.payments import background
from handwork_payments.providers.base import HoldRef
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.faults import audit_actions, payment_row
from tests.helpers import Api, Party
from tests.peers.paypal_double import PayPalDouble, SpecValidator
from tests.providers.paypal.harness import (
    alerts_of,
    assert_spec_checked,
    calls,
    deliver,
    deliveries,
    held,
    paypal,
    released,
)

# --------------------------------------------------------------------------- chargebacks


def dispute_resource(
    dispute_id: str, capture_id: str, payment_id: int, amount: str, outcome: str | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "dispute_id": dispute_id,
        "create_time": "2026-01-05T10:00:00Z",
        "update_time": "2026-01-05T10:00:00Z",
        "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        "status": "OPEN",
        "dispute_amount": {"currency_code": "USD", "value": amount},
        "disputed_transactions": [
            {
                "seller_transaction_id": capture_id,
                "invoice_number": f"payment-{payment_id}",
                "custom": f"payment-{payment_id}",
            }
        ],
    }
    if outcome is not None:
        resource["status"] = "RESOLVED"
        resource["dispute_outcome"] = {"outcome_code": outcome}
    return resource


async def deliver_dispute(
    api: Api, double: PayPalDouble, specs: SpecValidator, event_type: str, resource: dict[str, Any]
) -> WebhookDelivery:
    # What we deliver is what PayPal's disputes spec describes.
    assert specs.validate_schema("disputes", "dispute", resource) == []
    return await deliver(api, double, event_type, resource)


def reversal_resource(double: PayPalDouble, capture_id: str, amount: str) -> dict[str, Any]:
    """PAYMENT.CAPTURE.REVERSED as PayPal sends it: refund-shaped, pointing up at the
    capture it takes back."""
    return {
        "id": f"REV{secrets.token_hex(7).upper()}",
        "status": "COMPLETED",
        "amount": {"currency_code": "USD", "value": f"-{amount}"},
        "create_time": "2026-01-06T10:00:00Z",
        "update_time": "2026-01-06T10:00:00Z",
        "links": [
            {
                "href": f"https://api-m.sandbox.paypal.com/v2/payments/captures/{capture_id}",
                "rel": "up",
                "method": "GET",
            }
        ],
    }


async def captured_in_escrow(
    api: Api, double: PayPalDouble, amount: str
) -> tuple[Party, Party, dict[str, Any], str]:
    """A held payment whose authorisation the hold guard has captured (day 28.6): a buyer
    can dispute only captured money."""
    client, pro, payment = await held(api, double, amount)
    double.advance(days=28.6)
    report = await background.guard_holds(api.runtime, now=now() + timedelta(days=28.6))
    assert report.captured == [payment["id"]]
    row = await payment_row(api.runtime, payment["id"])
    assert row.provider_capture_id is not None
    return client, pro, payment, row.provider_capture_id


async def dispute_rows(runtime: Runtime, payment_id: int) -> list[PaymentDispute]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(PaymentDispute)
            .where(PaymentDispute.payment_id == payment_id)
            .order_by(PaymentDispute.id)
        )
        return list(rows.all())


async def test_chargeback_freezes_held_funds_and_a_win_unfreezes_them(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    client, pro, payment, capture_id = await captured_in_escrow(api, double, "100.00")
    gets = len(calls(double, "captures.get"))
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-1001", capture_id, payment["id"], "100.00"),
    )
    # The dispute names the capture: the adapter asked PayPal which order it belongs to,
    # on receipt (the processing job is locked per order) and when processed.
    assert len(calls(double, "captures.get")) == gets + 2
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert shown["status"] == "disputed"
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert (dispute.status, dispute.provider_dispute_id, dispute.initiated_by) == (
        "open",
        "PP-D-1001",
        None,
    )
    listed = (await api.get("/payments/disputes", client))["items"]
    assert [d["id"] for d in listed] == [dispute.id]
    # Frozen: neither released nor refunded, and our admins do not decide it.
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 409
    admin = await api.admin()
    r = await api.post(
        f"/payments/disputes/{dispute.id}/resolve",
        admin,
        {"outcome": "release", "resolution_notes": "mine"},
    )
    assert r.status_code == 409

    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource(
            "PP-D-1001", capture_id, payment["id"], "100.00", "RESOLVED_SELLER_FAVOUR"
        ),
    )
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert dispute.status == "closed" and "RESOLVED_SELLER_FAVOUR" in (
        dispute.resolution_notes or ""
    )
    assert (await api.get(f"/payments/{payment['id']}", client))["status"] == "held"
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert (await api.earnings(pro))["available_balance"] == "95.00"
    assert_spec_checked(double, "captures.get", "webhooks.verify")


async def test_chargeback_lost_in_part_then_the_rest_is_released(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    """PayPal reverses the disputed 40.00 while the dispute is open, then the buyer wins:
    40.00 taken once (at the reversal), the other 60.00 released."""
    client, pro, payment, capture_id = await captured_in_escrow(api, double, "100.00")
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-2002", capture_id, payment["id"], "40.00"),
    )
    reversal = reversal_resource(double, capture_id, "40.00")
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("disputed", "40.00")
    # Delivered again as a new event: the same reversal, not booked twice.
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource("PP-D-2002", capture_id, payment["id"], "40.00", "RESOLVED_BUYER_FAVOUR"),
    )
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("held", "40.00")
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert (dispute.status, dispute.refund_amount) == ("closed", 4000)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # 60.00 released: fee 3.00, worker 57.00.
    assert (await api.earnings(pro))["available_balance"] == "57.00"


async def test_chargeback_lost_after_release_is_taken_once_from_the_worker(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    client, pro, payment = await released(api, double, "100.00")
    capture_id = (await payment_row(api.runtime, payment["id"])).provider_capture_id or ""
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-3003", capture_id, payment["id"], "100.00"),
    )
    # Released money is not in escrow any more: recorded, with an alert, not frozen.
    assert (await api.get(f"/payments/{payment['id']}", client))["status"] == "released"
    assert any("PP-D-3003" in m for m in await alerts_of(api.runtime, "dispute_opened"))
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource("PP-D-3003", capture_id, payment["id"], "100.00", "ACCEPTED"),
    )
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", "100.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    # PayPal then refunds the buyer from our balance: that is the dispute's money.
    refund = await paypal(api).refund(
        ref=HoldRef(payment["paypal_payment_id"], None, capture_id),
        amount=10000,
        currency="USD",
        idempotency_key="paypal-dispute-PP-D-3003",
    )
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", double.refund_resource(refund.refund_id))
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert shown["refunded_amount"] == "100.00"
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    assert "payment.refund_covered" in await audit_actions(api.runtime, "payment", payment["id"])
    async with api.runtime.sessions() as session:
        kinds = await session.scalars(
            select(PaymentRefund.kind).where(PaymentRefund.payment_id == payment["id"])
        )
        assert list(kinds) == ["chargeback"]


# --------------------------------------------------------------------------- refunds at PayPal


async def test_refund_made_outside_our_api_is_recorded_once(api: Api, double: PayPalDouble) -> None:
    # Refunded in part before release (PayPal captured only 100.00 of 150.00): PayPal's
    # refund total on the capture never counts that 50.00.
    client, pro, payment = await held(api, double, "150.00")
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "50.00", "reason": "p"}
    )
    assert r.status_code == 200, r.text
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    row = await payment_row(api.runtime, payment["id"])
    ref = HoldRef(
        payment["paypal_payment_id"], row.provider_authorization_id, row.provider_capture_id
    )
    assert (await api.earnings(pro))["available_balance"] == "95.00"

    # Our own refund's webhook: ours, nothing more.
    admin = await api.admin()
    r = await api.post(
        "/payments/refund", admin, {"payment_id": payment["id"], "amount": "10.00", "reason": "o"}
    )
    assert r.status_code == 200, r.text
    capture = double.captures[row.provider_capture_id or ""]
    ours = capture["refund_ids"][-1]
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", double.refund_resource(ours))
    assert (await api.get(f"/payments/{payment['id']}", client))["refunded_amount"] == "60.00"

    # 25.00 refunded in PayPal's dashboard: recorded as a refund, from the worker pro rata.
    outside = await paypal(api).refund(
        ref=ref, amount=2500, currency="USD", idempotency_key="dashboard-refund-1"
    )
    resource = double.refund_resource(outside.refund_id)
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", resource)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("released", "85.00")
    async with api.runtime.sessions() as session:
        recorded = (
            await session.scalars(
                select(PaymentRefund).where(PaymentRefund.provider_refund_id == outside.refund_id)
            )
        ).all()
    assert [(r.amount, r.requested_by, r.before_release) for r in recorded] == [(2500, None, False)]
    assert len(await alerts_of(api.runtime, "external_refund")) == 1
    # The same refund told again (a new event, or the same one replayed): nothing more.
    await deliver(api, double, "PAYMENT.CAPTURE.REFUNDED", resource)
    [stored] = [d for d in await deliveries(api.runtime)][-1:]
    admin_replay = await api.post(f"/admin/webhooks/{stored.id}/replay", admin)
    assert admin_replay.status_code == 200, admin_replay.text
    await webhooks.process(api.runtime, stored.id)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert shown["refunded_amount"] == "85.00"
    # 100.00 released, 35.00 of it refunded: fee 5.00 - 1.75, worker 95.00 - 33.25.
    assert (await api.earnings(pro))["available_balance"] == "61.75"


async def test_capture_reversed_without_a_dispute_is_recorded_once(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    client, pro, payment = await released(api, double, "80.00")
    capture_id = (await payment_row(api.runtime, payment["id"])).provider_capture_id or ""
    reversal = reversal_resource(double, capture_id, "80.00")
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    shown = await api.get(f"/payments/{payment['id']}", client)
    assert (shown["status"], shown["refunded_amount"]) == ("refunded", "80.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    [reversed_alert] = await alerts_of(api.runtime, "capture_reversed")
    assert reversal["id"] in reversed_alert
    await deliver(api, double, "PAYMENT.CAPTURE.REVERSED", reversal)
    assert (await api.get(f"/payments/{payment['id']}", client))["refunded_amount"] == "80.00"

    # Its dispute shows up afterwards and is lost: the reversal was that money already.
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.CREATED",
        dispute_resource("PP-D-4004", capture_id, payment["id"], "80.00"),
    )
    await deliver_dispute(
        api,
        double,
        paypal_specs,
        "CUSTOMER.DISPUTE.RESOLVED",
        dispute_resource("PP-D-4004", capture_id, payment["id"], "80.00", "RESOLVED_BUYER_FAVOUR"),
    )
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert (dispute.status, dispute.refund_amount) == ("closed", 8000)
    async with api.runtime.sessions() as session:
        refunds = (
            await session.scalars(
                select(PaymentRefund).where(PaymentRefund.payment_id == payment["id"])
            )
        ).all()
    # A reversal by its kind (not by its reason's words), counted towards the dispute.
    assert [(r.amount, r.dispute_id, r.kind) for r in refunds] == [(8000, dispute.id, "reversal")]
    assert (await api.earnings(pro))["available_balance"] == "0.00"
