"""The built-in provider simulators, against real PostgreSQL: test payment methods, 3-D
Secure, PayPal approval, capture / cancel / refund rules, Stripe-style idempotency, payouts,
fault injection, signed events, and concurrent calls under one idempotency key."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from handwork_payments.models import SimulatedObject
from handwork_payments.providers import stripe_events
from handwork_payments.providers.base import (
    EventKind,
    HoldRef,
    HoldState,
    InvalidSignatureError,
    NewHold,
    PaymentDeclinedError,
    PayoutBatchProvider,
    PayoutOrder,
    ProviderError,
    ProviderHold,
    ProviderUnavailableError,
    ReauthorizingProvider,
    TransferState,
)
from handwork_payments.providers.simulated import (
    PAYPAL_SIGNATURE_HEADER,
    SimulatedPayPal,
    SimulatedProvider,
    SimulatedStripe,
    UnknownObjectError,
    paypal_simulator_signature,
)
from handwork_payments.runtime import Runtime
from tests.conftest import TEST_WEBHOOK_SECRET

STRIPE_INTENT_ID = re.compile(r"^pi_[A-Za-z0-9]{24}$")
PAYPAL_ID = re.compile(r"^[A-Z0-9]{17}$")
# How connect/reversals.py tells a ConnectProvider (the protocol is not runtime-checkable).
CONNECT_METHODS = ("create_connected_account", "create_account_link", "reverse_transfer")


@pytest.fixture
def stripe_sim(runtime: Runtime) -> SimulatedStripe:
    provider = runtime.providers.stripe
    assert isinstance(provider, SimulatedStripe)
    return provider


@pytest.fixture
def paypal_sim(runtime: Runtime) -> SimulatedPayPal:
    provider = runtime.providers.paypal
    assert isinstance(provider, SimulatedPayPal)
    return provider


async def create(
    sim: SimulatedProvider,
    payment_id: int = 1,
    *,
    amount: int = 15_000,
    currency: str = "USD",
    payment_method: str | None = None,
    key: str | None = None,
) -> ProviderHold:
    return await sim.create_hold(
        NewHold(
            payment_id=payment_id,
            booking_id=100 + payment_id,
            amount=amount,
            currency=currency,
            payment_method=payment_method,
            return_url="https://example.com/return",
            cancel_url="https://example.com/cancel",
        ),
        idempotency_key=key or f"payment-{payment_id}-hold",
    )


async def paypal_authorised(
    sim: SimulatedPayPal, payment_id: int = 1, amount: int = 15_000
) -> ProviderHold:
    hold = await create(sim, payment_id, amount=amount)
    payer_id = await sim.approve(hold.provider_payment_id)
    return await sim.confirm_hold(
        provider_payment_id=hold.provider_payment_id,
        payer_id=payer_id,
        idempotency_key=f"payment-{payment_id}-confirm",
    )


async def count(runtime: Runtime, kind: str) -> int:
    async with runtime.sessions() as session:
        total = await session.scalar(
            select(func.count()).select_from(SimulatedObject).where(SimulatedObject.kind == kind)
        )
    return int(total or 0)


def ref(hold: ProviderHold) -> HoldRef:
    return HoldRef(hold.provider_payment_id, hold.authorization_id, hold.capture_id)


def close_to(moment: datetime | None, expected: datetime) -> bool:
    return moment is not None and abs(moment - expected) < timedelta(minutes=1)


# --- Stripe test payment methods -------------------------------------------------------


async def test_visa_authorises_a_manual_capture_intent(
    stripe_sim: SimulatedStripe,
) -> None:
    hold = await create(stripe_sim, payment_method="pm_card_visa")

    assert hold.state is HoldState.AUTHORIZED
    assert STRIPE_INTENT_ID.match(hold.provider_payment_id)
    assert hold.amount == 15_000 and hold.currency == "USD"
    assert hold.client_secret is not None
    assert hold.client_secret.startswith(f"{hold.provider_payment_id}_secret_")
    assert close_to(hold.capture_by, datetime.now(UTC) + timedelta(days=7))
    assert hold.captured_amount == 0 and hold.refunded_amount == 0
    intent = await stripe_sim.intent_object(hold.provider_payment_id)
    assert intent["object"] == "payment_intent"
    assert intent["status"] == "requires_capture"
    assert intent["capture_method"] == "manual"
    assert intent["amount"] == 15_000
    assert intent["amount_capturable"] == 15_000
    assert intent["amount_received"] == 0
    assert intent["currency"] == "usd"
    reference = stripe_sim.ids.key("payment-1")
    assert intent["metadata"] == {"payment_id": "1", "booking_id": "101", "reference": reference}
    assert intent["latest_charge"].startswith("ch_")


async def test_declined_card_raises_and_leaves_the_intent_waiting(
    runtime: Runtime, stripe_sim: SimulatedStripe
) -> None:
    with pytest.raises(PaymentDeclinedError) as declined:
        await create(stripe_sim, payment_method="pm_card_chargeDeclined")
    assert declined.value.code == "card_declined"
    assert declined.value.message == "Your card was declined."

    # The same key answers the same decline and creates no second intent.
    with pytest.raises(PaymentDeclinedError):
        await create(stripe_sim, payment_method="pm_card_chargeDeclined")
    assert await count(runtime, "payment_intent") == 1
    async with runtime.sessions() as session:
        stored = await session.scalar(
            select(SimulatedObject).where(SimulatedObject.kind == "payment_intent")
        )
    assert stored is not None
    assert stored.data["status"] == "requires_payment_method"
    assert stored.data["last_payment_error"]["code"] == "card_declined"
    hold = await stripe_sim.get_hold(HoldRef(stored.id))
    assert hold.state is HoldState.FAILED
    assert hold.failure_message == "Your card was declined."


async def test_unknown_payment_method_is_refused_before_anything_exists(
    runtime: Runtime, stripe_sim: SimulatedStripe
) -> None:
    with pytest.raises(ProviderError) as refused:
        await create(stripe_sim, payment_method="pm_card_bogus")
    assert refused.value.code == "resource_missing"
    assert "No such PaymentMethod" in refused.value.message
    assert await count(runtime, "payment_intent") == 0
    assert await count(runtime, "idempotency") == 0


async def test_intent_without_a_method_waits_for_the_browser(
    stripe_sim: SimulatedStripe,
) -> None:
    hold = await create(stripe_sim)
    assert hold.state is HoldState.REQUIRES_PAYMENT_METHOD
    assert hold.client_secret is not None

    confirmed = await stripe_sim.client_confirm(hold.provider_payment_id, "pm_card_visa")
    assert confirmed.state is HoldState.AUTHORIZED
    seen = await stripe_sim.confirm_hold(
        provider_payment_id=hold.provider_payment_id, payer_id=None, idempotency_key="k-confirm"
    )
    assert seen.state is HoldState.AUTHORIZED and seen.amount == 15_000


async def test_client_confirm_decline_is_stored_on_the_intent(
    stripe_sim: SimulatedStripe,
) -> None:
    hold = await create(stripe_sim)
    with pytest.raises(PaymentDeclinedError):
        await stripe_sim.client_confirm(hold.provider_payment_id, "pm_card_chargeDeclined")
    intent = await stripe_sim.intent_object(hold.provider_payment_id)
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["message"] == "Your card was declined."
    seen = await stripe_sim.confirm_hold(
        provider_payment_id=hold.provider_payment_id, payer_id=None, idempotency_key="k"
    )
    assert seen.state is HoldState.FAILED


async def test_three_d_secure_needs_authentication_before_it_is_authorised(
    stripe_sim: SimulatedStripe,
) -> None:
    hold = await create(stripe_sim, payment_method="pm_card_authenticationRequired")
    assert hold.state is HoldState.REQUIRES_ACTION
    key = "payment-1-confirm"
    before = await stripe_sim.confirm_hold(
        provider_payment_id=hold.provider_payment_id, payer_id=None, idempotency_key=key
    )
    assert before.state is HoldState.REQUIRES_ACTION
    intent = await stripe_sim.intent_object(hold.provider_payment_id)
    assert intent["next_action"]["type"] == "use_stripe_sdk"

    authenticated = await stripe_sim.authenticate(hold.provider_payment_id)
    assert authenticated.state is HoldState.AUTHORIZED
    # Confirming again under the same key shows the new state, not a stored answer.
    after = await stripe_sim.confirm_hold(
        provider_payment_id=hold.provider_payment_id, payer_id=None, idempotency_key=key
    )
    assert after.state is HoldState.AUTHORIZED
    assert close_to(after.capture_by, datetime.now(UTC) + timedelta(days=7))
    with pytest.raises(ProviderError) as again:
        await stripe_sim.authenticate(hold.provider_payment_id)
    assert again.value.code == "payment_intent_unexpected_state"


async def test_failed_three_d_secure_fails_the_hold(stripe_sim: SimulatedStripe) -> None:
    hold = await create(stripe_sim, payment_method="pm_card_authenticationRequired")
    failed = await stripe_sim.authenticate(hold.provider_payment_id, succeed=False)
    assert failed.state is HoldState.FAILED
    intent = await stripe_sim.intent_object(hold.provider_payment_id)
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == "payment_intent_authentication_failure"


async def test_unknown_intent_is_resource_missing(stripe_sim: SimulatedStripe) -> None:
    with pytest.raises(ProviderError) as missing:
        await stripe_sim.get_hold(HoldRef("pi_doesnotexist"))
    assert missing.value.code == "resource_missing"


@pytest.mark.parametrize("object_id", ["pi_\x00abc", "pi_" + "a" * 62])
async def test_an_id_that_cannot_be_stored_is_unknown_not_a_database_error(
    stripe_sim: SimulatedStripe, paypal_sim: SimulatedPayPal, object_id: str
) -> None:
    for read in (
        stripe_sim.intent_object(object_id),
        stripe_sim.object_data(object_id),
        stripe_sim.client_confirm(object_id, "pm_card_visa"),
        stripe_sim.get_hold(HoldRef(object_id)),
    ):
        with pytest.raises(UnknownObjectError) as stripe_missing:
            await read
        assert stripe_missing.value.code == "resource_missing"
    with pytest.raises(UnknownObjectError) as paypal_missing:
        await paypal_sim.approve(object_id)
    assert paypal_missing.value.code == "INVALID_RESOURCE_ID"


# --- optional capabilities: each simulator has exactly its provider's ------------------


def test_the_stripe_simulator_has_connect_and_no_batches_or_reauthorisation(
    stripe_sim: SimulatedStripe,
) -> None:
    assert all(hasattr(stripe_sim, name) for name in CONNECT_METHODS)
    assert not isinstance(stripe_sim, PayoutBatchProvider)
    assert not isinstance(stripe_sim, ReauthorizingProvider)
    assert not hasattr(stripe_sim, "approve")


def test_the_paypal_simulator_has_batches_and_reauthorisation_and_no_connect(
    paypal_sim: SimulatedPayPal,
) -> None:
    assert not any(hasattr(paypal_sim, name) for name in CONNECT_METHODS)
    assert isinstance(paypal_sim, PayoutBatchProvider)
    assert isinstance(paypal_sim, ReauthorizingProvider)
    assert not hasattr(paypal_sim, "client_confirm")


# --- PayPal approve / authorise ----------------------------------------------------------


async def test_paypal_order_is_approved_then_authorised(paypal_sim: SimulatedPayPal) -> None:
    hold = await create(paypal_sim)
    order_id = hold.provider_payment_id
    assert PAYPAL_ID.match(order_id)
    assert hold.state is HoldState.REQUIRES_APPROVAL
    assert hold.approval_url == f"/api/v1/simulator/paypal/checkoutnow?token={order_id}"
    assert hold.amount == 15_000

    with pytest.raises(ProviderError) as not_approved:
        await paypal_sim.confirm_hold(
            provider_payment_id=order_id, payer_id="PAYER123456789", idempotency_key="c1"
        )
    assert not_approved.value.code == "ORDER_NOT_APPROVED"
    assert not_approved.value.message == "Payer has not yet approved the Order for payment."

    payer_id = await paypal_sim.approve(order_id)
    assert re.match(r"^PAYER[A-Z0-9]{9}$", payer_id)
    assert await paypal_sim.approve(order_id) == payer_id

    with pytest.raises(ProviderError) as mismatch:
        await paypal_sim.confirm_hold(
            provider_payment_id=order_id, payer_id="PAYERXXXXXXXXX", idempotency_key="c1"
        )
    assert mismatch.value.code == "PAYER_ID_MISMATCH"

    # The refused calls stored nothing: the same key now authorises.
    held = await paypal_sim.confirm_hold(
        provider_payment_id=order_id, payer_id=payer_id, idempotency_key="c1"
    )
    assert held.state is HoldState.AUTHORIZED
    assert held.authorization_id is not None and PAYPAL_ID.match(held.authorization_id)
    assert close_to(held.capture_by, datetime.now(UTC) + timedelta(days=29))
    order = await paypal_sim.order_object(order_id)
    assert order["status"] == "COMPLETED"
    assert order["purchase_units"][0]["amount"] == {"currency_code": "USD", "value": "150.00"}
    assert order["purchase_units"][0]["custom_id"] == paypal_sim.ids.key("payment-1")


async def test_paypal_capture_and_refund(paypal_sim: SimulatedPayPal) -> None:
    held = await paypal_authorised(paypal_sim, amount=15_000)
    capture = await paypal_sim.capture(
        ref=ref(held), amount=10_000, currency="USD", idempotency_key="payment-1-capture"
    )
    assert PAYPAL_ID.match(capture.capture_id) and capture.amount == 10_000
    first = await paypal_sim.refund(
        ref=ref(held), amount=2_500, currency="USD", idempotency_key="refund-1"
    )
    assert first.amount == 2_500
    with pytest.raises(ProviderError) as too_much:
        await paypal_sim.refund(
            ref=ref(held), amount=7_501, currency="USD", idempotency_key="refund-2"
        )
    assert too_much.value.code == "REFUND_AMOUNT_EXCEEDED"
    await paypal_sim.refund(ref=ref(held), amount=7_500, currency="USD", idempotency_key="refund-3")
    hold = await paypal_sim.get_hold(ref(held))
    assert hold.state is HoldState.CAPTURED
    assert hold.capture_id == capture.capture_id
    assert hold.captured_amount == 10_000
    assert hold.refunded_amount == 10_000
    with pytest.raises(ProviderError) as again:
        await paypal_sim.capture(
            ref=ref(held), amount=5_000, currency="USD", idempotency_key="payment-1-capture-2"
        )
    assert again.value.code == "AUTHORIZATION_ALREADY_CAPTURED"


async def test_paypal_cancel_voids_the_authorisation(paypal_sim: SimulatedPayPal) -> None:
    held = await paypal_authorised(paypal_sim)
    await paypal_sim.cancel(ref=ref(held), idempotency_key="payment-1-cancel")
    hold = await paypal_sim.get_hold(ref(held))
    assert hold.state is HoldState.CANCELED
    with pytest.raises(ProviderError) as voided:
        await paypal_sim.capture(
            ref=ref(held), amount=100, currency="USD", idempotency_key="payment-1-capture"
        )
    assert voided.value.code == "AUTHORIZATION_VOIDED"


# --- capture, cancel, refund ---------------------------------------------------------------


async def test_capture_less_than_authorised_releases_the_rest(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    capture = await stripe_sim.capture(
        ref=ref(held), amount=12_000, currency="USD", idempotency_key="payment-1-capture"
    )
    assert capture.capture_id.startswith("ch_") and capture.amount == 12_000

    hold = await stripe_sim.get_hold(ref(held))
    assert hold.state is HoldState.CAPTURED
    assert hold.capture_id == capture.capture_id
    assert hold.amount == 15_000 and hold.captured_amount == 12_000
    assert hold.capture_by is None
    intent = await stripe_sim.intent_object(held.provider_payment_id)
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == 12_000 and intent["amount_capturable"] == 0


async def test_capture_repeated_with_its_key_returns_the_same_capture(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    first = await stripe_sim.capture(
        ref=ref(held), amount=12_000, currency="USD", idempotency_key="payment-1-capture"
    )
    second = await stripe_sim.capture(
        ref=ref(held), amount=12_000, currency="USD", idempotency_key="payment-1-capture"
    )
    assert second == first
    assert (await stripe_sim.get_hold(ref(held))).captured_amount == 12_000

    with pytest.raises(ProviderError) as other_key:
        await stripe_sim.capture(
            ref=ref(held), amount=12_000, currency="USD", idempotency_key="payment-1-capture-b"
        )
    assert other_key.value.code == "payment_intent_unexpected_state"
    assert (await stripe_sim.get_hold(ref(held))).captured_amount == 12_000


async def test_capture_beyond_the_authorisation_or_of_nothing_is_refused(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    with pytest.raises(ProviderError) as too_much:
        await stripe_sim.capture(ref=ref(held), amount=15_001, currency="USD", idempotency_key="a")
    assert too_much.value.code == "amount_too_large"
    with pytest.raises(ProviderError):
        await stripe_sim.capture(ref=ref(held), amount=0, currency="USD", idempotency_key="b")
    with pytest.raises(ProviderError):
        await stripe_sim.capture(ref=ref(held), amount=100, currency="EUR", idempotency_key="c")
    unauthorised = await create(stripe_sim, 2)
    with pytest.raises(ProviderError) as not_held:
        await stripe_sim.capture(
            ref=ref(unauthorised), amount=100, currency="USD", idempotency_key="d"
        )
    assert not_held.value.code == "payment_intent_unexpected_state"
    # Refusals stored nothing: the full amount can still be captured under key "a".
    capture = await stripe_sim.capture(
        ref=ref(held), amount=15_000, currency="USD", idempotency_key="e"
    )
    assert capture.amount == 15_000


async def test_cancel_voids_an_uncaptured_hold_only(stripe_sim: SimulatedStripe) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    await stripe_sim.cancel(ref=ref(held), idempotency_key="payment-1-cancel")
    hold = await stripe_sim.get_hold(ref(held))
    assert hold.state is HoldState.CANCELED
    # Canceling a canceled hold is the outcome asked for.
    await stripe_sim.cancel(ref=ref(held), idempotency_key="payment-1-cancel-again")
    with pytest.raises(ProviderError) as canceled:
        await stripe_sim.capture(
            ref=ref(held), amount=15_000, currency="USD", idempotency_key="payment-1-capture"
        )
    assert canceled.value.code == "payment_intent_unexpected_state"

    captured = await create(stripe_sim, 2, payment_method="pm_card_visa")
    await stripe_sim.capture(
        ref=ref(captured), amount=15_000, currency="USD", idempotency_key="payment-2-capture"
    )
    with pytest.raises(ProviderError):
        await stripe_sim.cancel(ref=ref(captured), idempotency_key="payment-2-cancel")
    assert (await stripe_sim.get_hold(ref(captured))).state is HoldState.CAPTURED


async def test_refunds_add_up_to_the_captured_amount_and_not_beyond(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    with pytest.raises(ProviderError):
        await stripe_sim.refund(ref=ref(held), amount=100, currency="USD", idempotency_key="r0")
    await stripe_sim.capture(
        ref=ref(held), amount=10_000, currency="USD", idempotency_key="payment-1-capture"
    )
    first = await stripe_sim.refund(
        ref=ref(held), amount=4_000, currency="USD", idempotency_key="r1"
    )
    assert first.refund_id.startswith("re_") and first.amount == 4_000
    assert (
        await stripe_sim.refund(ref=ref(held), amount=4_000, currency="USD", idempotency_key="r1")
    ) == first
    with pytest.raises(ProviderError) as beyond:
        await stripe_sim.refund(ref=ref(held), amount=6_001, currency="USD", idempotency_key="r2")
    assert beyond.value.code == "amount_too_large"
    last = await stripe_sim.refund(
        ref=ref(held), amount=6_000, currency="USD", idempotency_key="r3"
    )
    assert last.amount == 6_000

    hold = await stripe_sim.get_hold(ref(held))
    assert hold.captured_amount == 10_000 and hold.refunded_amount == 10_000
    with pytest.raises(ProviderError) as exhausted:
        await stripe_sim.refund(ref=ref(held), amount=1, currency="USD", idempotency_key="r4")
    assert exhausted.value.code == "charge_already_refunded"
    charge = await stripe_sim.object_data(hold.capture_id or "")
    assert charge["amount_refunded"] == 10_000 and charge["refunded"] is True


# --- idempotency keys ---------------------------------------------------------------------


async def test_a_key_reused_with_other_parameters_is_refused(
    runtime: Runtime, stripe_sim: SimulatedStripe
) -> None:
    first = await create(stripe_sim, amount=15_000, key="k-1")
    again = await create(stripe_sim, amount=15_000, key="k-1")
    assert again == first
    with pytest.raises(ProviderError) as other_amount:
        await create(stripe_sim, amount=16_000, key="k-1")
    assert other_amount.value.code == "idempotency_key_in_use"
    assert await count(runtime, "payment_intent") == 1

    held = await create(stripe_sim, 2, payment_method="pm_card_visa")
    await stripe_sim.capture(ref=ref(held), amount=5_000, currency="USD", idempotency_key="k-2")
    with pytest.raises(ProviderError) as other_operation:
        await stripe_sim.refund(ref=ref(held), amount=5_000, currency="USD", idempotency_key="k-2")
    assert other_operation.value.code == "idempotency_key_in_use"
    assert (await stripe_sim.get_hold(ref(held))).refunded_amount == 0


async def test_stripe_and_paypal_keys_are_separate(
    stripe_sim: SimulatedStripe, paypal_sim: SimulatedPayPal
) -> None:
    stripe_hold = await create(stripe_sim, key="shared")
    paypal_hold = await create(paypal_sim, key="shared")
    assert stripe_hold.provider_payment_id.startswith("pi_")
    assert PAYPAL_ID.match(paypal_hold.provider_payment_id)


# --- payouts --------------------------------------------------------------------------------


async def test_stripe_payout_is_a_transfer_found_again_by_its_key(
    stripe_sim: SimulatedStripe,
) -> None:
    order = PayoutOrder(
        payout_id=7, destination="acct_1Nv0FGQ9RKHgCVdK", amount=9_500, currency="USD"
    )
    assert await stripe_sim.find_payout(order) is None
    transfer = await stripe_sim.send_payout(order)
    assert re.match(r"^tr_[A-Za-z0-9]{24}$", transfer.transfer_id)
    assert transfer.state is TransferState.SUCCEEDED
    assert transfer.amount == 9_500 and transfer.currency == "USD"
    assert await stripe_sim.send_payout(order) == transfer
    assert await stripe_sim.find_payout(order) == transfer
    other = PayoutOrder(payout_id=8, destination=order.destination, amount=9_500, currency="USD")
    assert await stripe_sim.find_payout(other) is None
    stored = await stripe_sim.object_data(transfer.transfer_id)
    assert stored["destination"] == order.destination
    assert stored["metadata"] == {"payout_id": "7", "reference": stripe_sim.ids.key("payout-7")}
    assert stored["transfer_group"] == stripe_sim.ids.key("payout-7")

    with pytest.raises(ProviderError) as bad:
        await stripe_sim.send_payout(
            PayoutOrder(payout_id=9, destination="worker@example.com", amount=100, currency="USD")
        )
    assert bad.value.code == "invalid_destination"


async def test_paypal_payout_goes_to_an_email(paypal_sim: SimulatedPayPal) -> None:
    order = PayoutOrder(payout_id=3, destination="worker@example.com", amount=4_750, currency="USD")
    transfer = await paypal_sim.send_payout(order)
    assert re.match(r"^[A-Z0-9]{13}$", transfer.transfer_id)
    assert transfer.batch_id is not None and re.match(r"^[A-Z0-9]{13}$", transfer.batch_id)
    assert transfer.state is TransferState.SUCCEEDED and transfer.amount == 4_750
    assert await paypal_sim.find_payout(order) == transfer
    item = await paypal_sim.object_data(transfer.transfer_id)
    assert item["payout_item"]["amount"] == {"currency": "USD", "value": "47.50"}
    assert item["payout_item"]["sender_item_id"] == paypal_sim.ids.key("payout-3")
    with pytest.raises(ProviderError):
        await paypal_sim.send_payout(
            PayoutOrder(payout_id=4, destination="not-an-email", amount=100, currency="USD")
        )
    assert (
        await paypal_sim.find_payout(
            PayoutOrder(payout_id=4, destination="not-an-email", amount=100, currency="USD")
        )
        is None
    )


async def test_connect_accounts_links_and_reversals(stripe_sim: SimulatedStripe) -> None:
    account_id = await stripe_sim.create_connected_account(worker_id=5, email="w@example.com")
    assert account_id.startswith("acct_")
    again = await stripe_sim.create_connected_account(worker_id=5, email="new@example.com")
    assert again == account_id
    url = await stripe_sim.create_account_link(
        account_id=account_id, refresh_url="https://x/refresh", return_url="https://x/return"
    )
    assert url == f"https://connect.stripe.com/setup/s/simulated/{account_id}"
    with pytest.raises(ProviderError):
        await stripe_sim.create_account_link(
            account_id="acct_missing", refresh_url="https://x/r", return_url="https://x/r"
        )
    account = await stripe_sim.complete_onboarding(account_id)
    assert account["payouts_enabled"] is True

    transfer = await stripe_sim.send_payout(
        PayoutOrder(payout_id=1, destination=account_id, amount=1_000, currency="USD")
    )
    reversal = await stripe_sim.reverse_transfer(
        transfer_id=transfer.transfer_id, amount=600, idempotency_key="rev-1"
    )
    assert reversal.refund_id.startswith("trr_") and reversal.amount == 600
    with pytest.raises(ProviderError) as beyond:
        await stripe_sim.reverse_transfer(
            transfer_id=transfer.transfer_id, amount=401, idempotency_key="rev-2"
        )
    assert beyond.value.code == "insufficient_funds"
    await stripe_sim.reverse_transfer(
        transfer_id=transfer.transfer_id, amount=400, idempotency_key="rev-3"
    )
    stored = await stripe_sim.object_data(transfer.transfer_id)
    assert stored["amount_reversed"] == 1_000 and stored["reversed"] is True


# --- fault injection ------------------------------------------------------------------------


async def test_timeout_acts_not_and_is_consumed(
    runtime: Runtime, stripe_sim: SimulatedStripe
) -> None:
    await stripe_sim.inject_fault("create_hold", "timeout")
    with pytest.raises(ProviderUnavailableError):
        await create(stripe_sim, payment_method="pm_card_visa")
    assert await count(runtime, "payment_intent") == 0
    assert await count(runtime, "fault") == 0
    hold = await create(stripe_sim, payment_method="pm_card_visa")
    assert hold.state is HoldState.AUTHORIZED

    order = PayoutOrder(payout_id=1, destination="acct_abc", amount=500, currency="USD")
    await stripe_sim.inject_fault("send_payout", "timeout")
    with pytest.raises(ProviderUnavailableError):
        await stripe_sim.send_payout(order)
    assert await stripe_sim.find_payout(order) is None
    assert await count(runtime, "transfer") == 0


async def test_timeout_after_success_leaves_the_payout_findable(
    runtime: Runtime, stripe_sim: SimulatedStripe
) -> None:
    order = PayoutOrder(payout_id=1, destination="acct_abc", amount=500, currency="USD")
    await stripe_sim.inject_fault("send_payout", "timeout_after_success")
    with pytest.raises(ProviderUnavailableError):
        await stripe_sim.send_payout(order)
    found = await stripe_sim.find_payout(order)
    assert found is not None and found.amount == 500
    # Sending again under the same key replays; no second transfer.
    assert await stripe_sim.send_payout(order) == found
    assert await count(runtime, "transfer") == 1


async def test_timeout_after_success_of_a_capture_shows_in_get_hold(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    await stripe_sim.inject_fault("capture", "timeout_after_success")
    with pytest.raises(ProviderUnavailableError):
        await stripe_sim.capture(
            ref=ref(held), amount=15_000, currency="USD", idempotency_key="payment-1-capture"
        )
    hold = await stripe_sim.get_hold(ref(held))
    assert hold.state is HoldState.CAPTURED and hold.captured_amount == 15_000
    capture = await stripe_sim.capture(
        ref=ref(held), amount=15_000, currency="USD", idempotency_key="payment-1-capture"
    )
    assert capture.capture_id == hold.capture_id and capture.amount == 15_000


async def test_error_fault_refuses_without_acting_as_often_as_injected(
    runtime: Runtime, paypal_sim: SimulatedPayPal
) -> None:
    await paypal_sim.inject_fault("create_hold", "error", times=2)
    for _ in range(2):
        with pytest.raises(ProviderError) as failed:
            await create(paypal_sim)
        assert failed.value.code == "simulated_failure"
    assert await count(runtime, "order") == 0
    hold = await create(paypal_sim)
    assert hold.state is HoldState.REQUIRES_APPROVAL


async def test_faults_are_per_provider_and_per_operation(
    stripe_sim: SimulatedStripe, paypal_sim: SimulatedPayPal
) -> None:
    await stripe_sim.inject_fault("get_hold", "timeout")
    paypal_hold = await create(paypal_sim)
    assert (await paypal_sim.get_hold(ref(paypal_hold))).state is HoldState.REQUIRES_APPROVAL
    stripe_hold = await create(stripe_sim)
    with pytest.raises(ProviderUnavailableError):
        await stripe_sim.get_hold(ref(stripe_hold))
    with pytest.raises(ValueError):
        await stripe_sim.inject_fault("get_holds", "timeout")
    with pytest.raises(ValueError):
        await stripe_sim.inject_fault("get_hold", "slow")


# --- events ----------------------------------------------------------------------------------


async def test_stripe_event_round_trips_through_parse_event(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    intent = await stripe_sim.intent_object(held.provider_payment_id)
    body, headers = stripe_sim.stripe_event("payment_intent.amount_capturable_updated", intent)

    payload = json.loads(body)
    assert payload["object"] == "event" and payload["livemode"] is False
    assert payload["id"].startswith("evt_")
    assert payload["data"]["object"]["id"] == held.provider_payment_id
    event = await stripe_sim.parse_event(headers, body)
    assert event.kind is EventKind.HOLD_AUTHORIZED
    assert event.object_id == held.provider_payment_id
    assert event.amount == 15_000
    assert event.event_id == payload["id"]


async def test_stripe_event_signature_is_checked(stripe_sim: SimulatedStripe) -> None:
    body, headers = stripe_sim.stripe_event("payment_intent.payment_failed", {"id": "pi_x"})
    tampered = body.replace(b"pi_x", b"pi_y")
    with pytest.raises(InvalidSignatureError):
        await stripe_sim.parse_event(headers, tampered)
    wrong_secret = {"Stripe-Signature": stripe_events.sign(body, "whsec_someone_else")}
    with pytest.raises(InvalidSignatureError):
        await stripe_sim.parse_event(wrong_secret, body)
    with pytest.raises(InvalidSignatureError):
        await stripe_sim.parse_event({}, body)
    # Signed with the configured STRIPE_WEBHOOK_SECRET, so the real verifier accepts it.
    stripe_events.verify(body, headers["Stripe-Signature"], TEST_WEBHOOK_SECRET, 300)


async def test_paypal_event_signature_is_checked(paypal_sim: SimulatedPayPal) -> None:
    body, headers = paypal_sim.paypal_event("PAYMENT.CAPTURE.COMPLETED", {"id": "CAP1"})
    assert headers[PAYPAL_SIGNATURE_HEADER] == paypal_simulator_signature(body)
    with pytest.raises(InvalidSignatureError):
        await paypal_sim.parse_event(headers, body + b" ")
    with pytest.raises(InvalidSignatureError):
        await paypal_sim.parse_event({PAYPAL_SIGNATURE_HEADER: "00" * 32}, body)
    with pytest.raises(InvalidSignatureError):
        await paypal_sim.parse_event({}, body)
    # A header is Latin-1 text: a non-ASCII signature is a mismatch, not a TypeError.
    with pytest.raises(InvalidSignatureError):
        await paypal_sim.parse_event({PAYPAL_SIGNATURE_HEADER: "\u00b2" * 64}, body)
    # Its signing key is public (a simulator): a signed body nested past the JSON parser's
    # depth must still be a refusal, not a RecursionError.
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(InvalidSignatureError):
        await paypal_sim.parse_event(
            {PAYPAL_SIGNATURE_HEADER: paypal_simulator_signature(deep)}, deep
        )


async def test_paypal_events_round_trip_and_name_the_order(
    paypal_sim: SimulatedPayPal,
) -> None:
    held = await paypal_authorised(paypal_sim)
    await paypal_sim.capture(
        ref=ref(held), amount=15_000, currency="USD", idempotency_key="payment-1-capture"
    )
    await paypal_sim.refund(ref=ref(held), amount=5_000, currency="USD", idempotency_key="r-1")
    payments = (await paypal_sim.order_object(held.provider_payment_id))["purchase_units"][0][
        "payments"
    ]

    body, headers = paypal_sim.paypal_event("PAYMENT.CAPTURE.COMPLETED", payments["captures"][0])
    event = await paypal_sim.parse_event(headers, body)
    assert event.kind is EventKind.CAPTURED
    assert event.object_id == held.provider_payment_id and event.amount == 15_000

    body, headers = paypal_sim.paypal_event("PAYMENT.CAPTURE.REFUNDED", payments["refunds"][0])
    event = await paypal_sim.parse_event(headers, body)
    assert event.kind is EventKind.REFUNDED
    assert event.object_id == held.provider_payment_id and event.amount == 5_000


# --- concurrency ------------------------------------------------------------------------------


async def test_ten_concurrent_captures_under_one_key_capture_once(
    runtime: Runtime, stripe_sim: SimulatedStripe
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    captures = await asyncio.gather(
        *(
            stripe_sim.capture(
                ref=ref(held), amount=12_000, currency="USD", idempotency_key="payment-1-capture"
            )
            for _ in range(10)
        )
    )
    assert len({c.capture_id for c in captures}) == 1
    assert all(c.amount == 12_000 for c in captures)
    hold = await stripe_sim.get_hold(ref(held))
    assert hold.captured_amount == 12_000
    assert await count(runtime, "idempotency") == 2  # the hold's key and the capture's


async def test_concurrent_captures_under_different_keys_capture_once(
    stripe_sim: SimulatedStripe,
) -> None:
    held = await create(stripe_sim, payment_method="pm_card_visa")
    results = await asyncio.gather(
        *(
            stripe_sim.capture(
                ref=ref(held), amount=15_000, currency="USD", idempotency_key=f"capture-{i}"
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ProviderError)]
    assert len(succeeded) == 1 and len(refused) == 7
    assert (await stripe_sim.get_hold(ref(held))).captured_amount == 15_000
