"""The installation's provider id prefix (ProviderIds): what is prefixed, how our ids are read
back, how another installation's objects are recognised in webhooks, where the default
prefix comes from, and a capture answered with another amount."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, text

from handwork_payments.installation import provider_ids
from handwork_payments.models import Alert
from handwork_payments.providers import stripe_events
from handwork_payments.providers.base import (
    EventKind,
    PayoutOrder,
    ProviderCapture,
    ProviderIds,
)
from handwork_payments.providers.paypal import events as paypal_events
from handwork_payments.providers.simulated import SimulatedPayPal, SimulatedStripe
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.faults import payment_row
from tests.helpers import Api

OURS = ProviderIds("prod")


def test_keys_are_prefixed_and_read_back_only_when_ours() -> None:
    assert OURS.key("payout-7") == "prod-payout-7"
    assert OURS.local("prod-payout-7") == "payout-7"
    assert OURS.local("staging-payout-7") is None
    assert OURS.local("payout-7") is None and OURS.local(7) is None
    # Another installation's reference is foreign; one of ours from before prefixes (no
    # prefix) and no reference at all are not.
    assert OURS.foreign("staging-payout-7") and OURS.foreign("hw12ab-payment-1")
    assert not OURS.foreign("prod-payout-7")
    assert not OURS.foreign("payout-7") and not OURS.foreign("payment-1")
    assert not OURS.foreign(None) and not OURS.foreign("")
    for bad in ("", "has-dash", "x" * 25, "ünïcode"):
        with pytest.raises(ValueError):
            ProviderIds(bad)


def paypal_item_event(sender_item_id: str, sender_batch_id: str) -> dict[str, Any]:
    return {
        "id": "WH-1",
        "event_type": "PAYMENT.PAYOUTS-ITEM.SUCCEEDED",
        "resource": {
            "payout_item_id": "ITEM1",
            "payout_batch_id": "BATCH1",
            "sender_batch_id": sender_batch_id,
            "transaction_status": "SUCCESS",
            "payout_item": {
                "receiver": "w@example.com",
                "amount": {"currency": "USD", "value": "10.00"},
                "sender_item_id": sender_item_id,
            },
        },
    }


def test_paypal_events_read_our_ids_and_ignore_another_installations() -> None:
    ours = paypal_events.translate(paypal_item_event("prod-payout-7", "prod-payout-batch-7"), OURS)
    assert (ours.kind, ours.payout_id, ours.batch_key) == (
        EventKind.PAYOUT_SUCCEEDED,
        7,
        "payout-batch-7",
    )
    theirs = paypal_events.translate(
        paypal_item_event("staging-payout-7", "staging-payout-batch-7"), OURS
    )
    assert (theirs.kind, theirs.payout_id, theirs.batch_key) == (EventKind.IGNORED, None, None)
    assert theirs.failure_message == "another installation's object (staging-payout-7)"
    capture = {
        "id": "WH-2",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": {
            "id": "CAP1",
            "custom_id": "staging-payment-1",
            "amount": {"currency_code": "USD", "value": "10.00"},
        },
    }
    assert paypal_events.translate(capture, OURS).kind is EventKind.IGNORED
    assert paypal_events.payment_id_from_reference("prod-payment-41", OURS) == 41
    assert paypal_events.payment_id_from_reference("staging-payment-41", OURS) is None


def test_stripe_events_ignore_another_installations_objects() -> None:
    def transfer_event(reference: str) -> dict[str, Any]:
        obj = {"id": "tr_1", "amount": 1000, "metadata": {"reference": reference}}
        return {"id": "evt_1", "type": "transfer.reversed", "data": {"object": obj}}

    assert stripe_events.translate(transfer_event("prod-payout-1"), OURS).kind is (
        EventKind.TRANSFER_REVERSED
    )
    theirs = stripe_events.translate(transfer_event("staging-payout-1"), OURS)
    assert theirs.kind is EventKind.IGNORED and theirs.object_id == "tr_1"


async def test_the_default_prefix_is_made_once_and_every_process_reads_it(
    runtime: Runtime, database_url: str
) -> None:
    settings = make_settings(database_url)
    kept = provider_ids(settings, database_url)
    assert kept == runtime.providers.ids and kept.prefix.startswith("hw")
    # Gone (a table emptied by hand): N processes starting at once agree on a new one.
    async with runtime.engine.begin() as conn:
        await conn.execute(text("DELETE FROM installation"))
    made = await asyncio.gather(
        *(asyncio.to_thread(provider_ids, settings, database_url) for _ in range(8))
    )
    assert len(set(made)) == 1 and made[0].prefix.startswith("hw")
    # The setting wins.
    assert provider_ids(make_settings(database_url, provider_id_prefix="prod"), database_url) == (
        OURS
    )
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE installation SET provider_id_prefix = :p"), {"p": kept.prefix}
        )


async def test_a_capture_answered_with_another_amount_is_refused(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, worker, payment = await api.held_payment("100.00")

    async def someone_elses(**_: Any) -> ProviderCapture:
        return ProviderCapture("ch_other", 1234, "USD")

    monkeypatch.setattr(runtime.providers.stripe, "capture", someone_elses)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409, r.text
    assert "1234 != 10000" in r.json()["detail"]
    row = await payment_row(runtime, payment["id"])
    assert (row.status, row.provider_operation) == ("held", None)
    assert (await api.earnings(worker))["available_balance"] == "0.00"
    async with runtime.sessions() as session:
        [message] = (
            await session.scalars(select(Alert.message).where(Alert.kind == "capture_mismatch"))
        ).all()
    assert "ch_other" in message


async def test_two_installations_on_one_simulator_store_keep_their_own_payouts(
    runtime: Runtime,
) -> None:
    """The simulators keep keys per provider account, as the providers do: installations
    sharing one simulator store (one database) are kept apart by their prefixes."""
    for simulator in (SimulatedStripe, SimulatedPayPal):
        a = simulator(runtime.sessions, runtime.settings, ProviderIds("a"))
        b = simulator(runtime.sessions, runtime.settings, ProviderIds("b"))
        to = "acct_1Shared" if simulator is SimulatedStripe else "w@example.com"
        order_a = PayoutOrder(payout_id=1, destination=to, amount=1000, currency="USD")
        order_b = PayoutOrder(payout_id=1, destination=to, amount=2500, currency="USD")
        paid_a, paid_b = await a.send_payout(order_a), await b.send_payout(order_b)
        assert paid_a.transfer_id != paid_b.transfer_id
        assert (paid_a.amount, paid_b.amount) == (1000, 2500)
        assert await a.find_payout(order_a) == paid_a
        assert await b.find_payout(order_b) == paid_b
