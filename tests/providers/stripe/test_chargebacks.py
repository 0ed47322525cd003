"""Stripe for real against the double: chargebacks, refunds after payout and transfer
reversals.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe
from sqlalchemy import func, select

from handwork_payments.kit.clock import now
from handwork_payments.models import JournalEntry, MarketplaceEvent, PaymentDispute
from handwork_payments.payments import background
from tests.helpers import Api
from tests.peers.stripe_double import StripeDouble
from tests.providers.stripe.harness import (
    PREFIX,
    alerts,
    deliver,
    dispute_object,
    entry_kinds,
    intent_event,
    onboarded,
    paid_out,
    payment_row,
    refund,
    reversals_of,
)

# The SDK hands httpx its encoded form as `data=`, which httpx 0.28 deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


# --- against the double: chargebacks -------------------------------------------------------------


async def test_chargeback_on_a_held_payment_freezes_it_until_won(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    # Disputes exist on captured charges: the hold guard captured this one.
    await dashboard.v1.payment_intents.capture_async(intent_id)
    await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))

    opened = dispute_object(double, intent_id, 10000, "needs_response", "du_held1")
    await deliver(api, "charge.dispute.created", opened)
    await deliver(api, "charge.dispute.created", opened)  # repeated: one dispute

    assert (await payment_row(api, payment["id"])).status == "disputed"
    (dispute,) = (await api.get("/payments/disputes", client))["items"]
    assert (dispute["status"], dispute["initiated_by"]) == ("open", None)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409
    admin = await api.admin()
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "refund", "resolution_notes": "not ours to decide"},
    )
    assert r.status_code == 409 and "card network" in r.json()["detail"], r.text

    await deliver(api, "charge.dispute.closed", {**opened, "status": "won"})
    assert (await payment_row(api, payment["id"])).status == "held"
    (closed,) = (await api.get("/payments/disputes", client))["items"]
    assert closed["status"] == "closed" and "won" in closed["resolution_notes"]
    assert await entry_kinds(api, payment["id"]) == ["payment_hold", "provider_fee"]

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert (await api.earnings(pro))["available_balance"] == "95.00"


async def test_chargeback_lost_on_a_held_payment_refunds_from_escrow(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    await dashboard.v1.payment_intents.capture_async(intent_id)
    await deliver(api, "payment_intent.succeeded", intent_event(double, intent_id))
    # A partial chargeback whose `closed` overtakes its `created`: opened, then decided.
    lost = dispute_object(double, intent_id, 4000, "lost", "du_held2")

    await deliver(api, "charge.dispute.closed", lost)
    await deliver(api, "charge.dispute.created", {**lost, "status": "needs_response"})

    row = await payment_row(api, payment["id"])
    # 40.00 went back to the payer out of escrow; 60.00 is held for the client to release.
    assert (row.status, row.refunded_amount, row.refunded_fee) == ("held", 4000, 200)
    assert (await api.earnings(pro))["pending_balance"] == "57.00"
    async with api.runtime.sessions() as session:
        dispute = (await session.scalars(select(PaymentDispute))).one()
    assert (dispute.status, dispute.outcome, dispute.refund_amount) == ("closed", "split", 4000)
    assert await entry_kinds(api, payment["id"]) == [
        "payment_hold",
        "provider_fee",
        "payment_refund",
    ]
    assert len(await alerts(api, "chargeback_lost")) == 1

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert (await api.earnings(pro))["available_balance"] == "57.00"


async def test_chargeback_lost_after_release_and_payout_reverses_the_transfer(
    dbl: Api, double: StripeDouble
) -> None:
    """Recorded without moving the released payment; lost, the disputed amount is taken
    back from the worker (fee pro rata) and, the worker being paid out, from their
    connected account by a transfer reversal."""
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    intent_id = payment["stripe_payment_id"]
    await api.post(f"/payments/{payment['id']}/release", client)
    account_id = await onboarded(api, double, pro)
    payout = await paid_out(api, pro, "95.00")
    opened = dispute_object(double, intent_id, 10000, "needs_response", "du_released")

    await deliver(api, "charge.dispute.created", opened)
    assert (await payment_row(api, payment["id"])).status == "released"
    (dispute,) = (await api.get("/payments/disputes", client))["items"]
    assert dispute["status"] == "open"
    assert len(await alerts(api, "dispute_opened")) == 1
    async with api.runtime.sessions() as session:
        opened_events = await session.scalar(
            select(func.count()).where(MarketplaceEvent.type == "dispute.opened")
        )
    assert opened_events == 1  # the marketplace hears of it once (it was told twice)

    await deliver(api, "charge.dispute.closed", {**opened, "status": "lost"})

    row = await payment_row(api, payment["id"])
    assert (row.status, row.refunded_amount, row.refunded_fee) == ("refunded", 10000, 500)
    (reversal,) = await reversals_of(api, payout["id"])
    assert (reversal.amount, reversal.status) == (9500, "succeeded")
    (request,) = double.requests("POST", f"/v1/transfers/{payout['stripe_transfer_id']}/reversals")
    assert request.form == {"amount": "9500"}
    assert request.idempotency_key == f"{PREFIX}-payout-{payout['id']}-reversal-{reversal.id}"
    assert double.account_balances[account_id] == {"usd": 0}
    earnings = await api.earnings(pro)
    assert earnings["available_balance"] == "0.00"
    history = (await api.get("/payments/transactions", pro))["items"]
    assert [(t["transaction_type"], t["amount"]) for t in history] == [
        ("payout", "95.00"),
        ("refund", "-95.00"),
        ("payout", "-95.00"),
        ("earning", "95.00"),
    ]
    assert await entry_kinds(api, payment["id"]) == [
        "payment_hold",
        "provider_fee",
        "payment_release",
        "payment_refund",
    ]


# --- against the double: refunds after payout, transfer reversals -----------------------------


async def test_refund_after_payout_reverses_the_most_recent_transfers(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    account_id = await onboarded(api, double, pro)
    older = await paid_out(api, pro, "30.00")
    newer = await paid_out(api, pro, "50.00")
    assert (await api.earnings(pro))["available_balance"] == "15.00"
    admin = await api.admin()

    refunded = await refund(api, admin, payment["id"])

    assert refunded["status"] == "refunded"
    # The worker gave back 95.00 with 15.00 available: 80.00 is taken back from the
    # payouts, the most recent first.
    (from_newer,) = await reversals_of(api, newer["id"])
    (from_older,) = await reversals_of(api, older["id"])
    assert (from_newer.amount, from_newer.status) == (5000, "succeeded")
    assert (from_older.amount, from_older.status) == (3000, "succeeded")
    assert from_newer.id < from_older.id
    assert double.transfers[newer["stripe_transfer_id"]]["amount_reversed"] == 5000
    assert double.transfers[older["stripe_transfer_id"]]["amount_reversed"] == 3000
    assert double.account_balances[account_id] == {"usd": 0}
    assert (await api.earnings(pro))["available_balance"] == "0.00"

    # The transfer.reversed events of our own reversals change nothing.
    for payout in (newer, older):
        transfer = double.transfers[payout["stripe_transfer_id"]]
        await deliver(api, "transfer.reversed", dict(transfer))
    assert len(await reversals_of(api, newer["id"])) == 1
    assert (await api.earnings(pro))["available_balance"] == "0.00"


async def test_refund_after_payout_the_account_cannot_cover_leaves_a_debt(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    account_id = await onboarded(api, double, pro)
    payout = await paid_out(api, pro, "95.00")
    double.set_account_balance(account_id, "usd", 1000)  # paid out to the bank meanwhile
    admin = await api.admin()

    await refund(api, admin, payment["id"], "40.00")

    (reversal,) = await reversals_of(api, payout["id"])
    assert (reversal.amount, reversal.status) == (3800, "failed")
    assert reversal.failure_reason and "insufficient funds" in reversal.failure_reason
    # Never lost: the worker's 38.00 debt is on the books, and an operator is told.
    assert (await api.earnings(pro))["available_balance"] == "-38.00"
    (refused,) = await alerts(api, "payout_reversal_failed")
    assert refused.object_id == payout["id"]

    # Later earnings pay it off.
    booking = await api.booking(client, pro, "50.00")
    second = (await api.stripe_payment(client, booking)).json()
    await api.post(f"/payments/{second['id']}/release", client)
    assert (await api.earnings(pro))["available_balance"] == "9.50"


async def test_transfer_reversed_at_stripe(
    dbl: Api, double: StripeDouble, dashboard: stripe.StripeClient
) -> None:
    """In part: the amount comes back to the worker's balance; in full, with none of it
    ours: the payout failed (returned)."""
    api = dbl
    client, pro, payment = await api.held_payment("200.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await onboarded(api, double, pro)
    partly = await paid_out(api, pro, "100.00")
    wholly = await paid_out(api, pro, "90.00")
    assert (await api.earnings(pro))["available_balance"] == "0.00"

    partly_id = partly["stripe_transfer_id"]
    await dashboard.v1.transfers.reversals.create_async(partly_id, {"amount": 2500})
    await deliver(api, "transfer.reversed", dict(double.transfers[partly_id]))
    await deliver(api, "transfer.reversed", dict(double.transfers[partly_id]))

    (external,) = await reversals_of(api, partly["id"])
    assert (external.amount, external.refund_id, external.status) == (2500, None, "succeeded")
    assert (await api.earnings(pro))["available_balance"] == "25.00"
    assert len(await alerts(api, "payout_reversed_externally")) == 1

    wholly_id = wholly["stripe_transfer_id"]
    await dashboard.v1.transfers.reversals.create_async(wholly_id, {})
    await deliver(api, "transfer.reversed", dict(double.transfers[wholly_id]))
    items = (await api.get("/payments/payouts", pro))["items"]
    failed = next(p for p in items if p["id"] == wholly["id"])
    assert failed["status"] == "failed"
    assert (await api.earnings(pro))["available_balance"] == "115.00"
    assert await reversals_of(api, wholly["id"]) == []


async def test_reversal_left_pending_is_resumed_with_the_same_key(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await onboarded(api, double, pro)
    payout = await paid_out(api, pro, "95.00")
    path = f"/v1/transfers/{payout['stripe_transfer_id']}/reversals"
    double.hang_next("POST", path, after_effect=True)
    admin = await api.admin()

    refunded = await refund(api, admin, payment["id"], "20.00")
    assert refunded["refunded_amount"] == "20.00"  # the refund stands; the reversal waits
    (pending,) = await reversals_of(api, payout["id"])
    assert (pending.amount, pending.status) == (1900, "pending")
    assert (await api.earnings(pro))["available_balance"] == "-19.00"
    # Its transfer.reversed waits for it too.
    transfer = dict(double.transfers[payout["stripe_transfer_id"]])
    await deliver(api, "transfer.reversed", transfer, retried=True)

    # The payments resolver resumes it once it is stale, under the same key.
    assert (await background.resolve_operations(api.runtime, now=now())).reversals == 0
    later = now() + timedelta(seconds=api.runtime.settings.provider_operation_stale_seconds + 1)
    assert (await background.resolve_operations(api.runtime, now=later)).reversals == 1

    (done,) = await reversals_of(api, payout["id"])
    assert done.status == "succeeded"
    assert double.transfers[payout["stripe_transfer_id"]]["amount_reversed"] == 1900
    assert [r.idempotency_key for r in double.requests("POST", path)] == [
        f"{PREFIX}-payout-{payout['id']}-reversal-{done.id}"
    ] * 2
    assert (await api.earnings(pro))["available_balance"] == "0.00"
    async with api.runtime.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == "payout_reversal")
        )
    assert count == 1
