"""PayPal for real, payouts: one batch, settled by polling or by webhooks, never paid
twice; and the whole flow with the worker.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import pytest

from handwork_payments.kit.clock import now
from handwork_payments.models import DeliveryStatus, WorkerPayout
from handwork_payments.payouts import service as payouts
from handwork_payments.providers.base import ProviderUnavailableError
from handwork_payments.worker import running_worker
from tests.faults import audit_actions, payout_row
from tests.helpers import Api, eventually
from tests.peers.paypal_double import PayPalDouble
from tests.providers.paypal.harness import (
    PREFIX,
    alerts_of,
    assert_spec_checked,
    calls,
    deliver,
    deliveries,
    payouts_to,
    post_webhook,
    released,
    stale,
)

# --------------------------------------------------------------------------- payouts


async def test_payouts_go_in_one_batch_and_settle_by_polling(
    api: Api, double: PayPalDouble
) -> None:
    pro, _admin, requested = await payouts_to(
        api,
        double,
        [
            ("pro@example.com", "10.00"),
            ("locked+fail@example.com", "20.00"),
            ("newcomer+unclaimed@example.com", "30.00"),
        ],
    )
    ids = [p["id"] for p in requested]
    assert (await api.earnings(pro))["available_balance"] == "35.00"

    # The batch job (hp:send_payout_batch) sends every processed PayPal payout at once.
    assert await payouts.send_batch(api.runtime, "paypal") == ids
    [batch] = double.batches.values()
    key = f"payout-batch-{ids[0]}"
    assert batch["sender_batch_header"]["sender_batch_id"] == f"{PREFIX}-{key}"
    [post] = calls(double, "payouts.create")
    assert post.request_id == f"{PREFIX}-{key}"
    items = [double.items[i] for i in batch["item_ids"]]
    assert [i["payout_item"]["sender_item_id"] for i in items] == [
        f"{PREFIX}-payout-{i}" for i in ids
    ]
    assert [i["payout_item"]["receiver"] for i in items] == [
        "pro@example.com",
        "locked+fail@example.com",
        "newcomer+unclaimed@example.com",
    ]
    assert [i["amount"] for i in items] == [1000, 2000, 3000]
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["processing"] * 3
    assert [r.paypal_payout_id for r in rows] == [i["payout_item_id"] for i in items]
    assert {r.paypal_batch_id for r in rows} == {batch["payout_batch_id"]}
    assert {r.batch_key for r in rows} == {key}
    # Nothing more to send.
    assert await payouts.send_batch(api.runtime, "paypal") == []

    # PayPal processes the batch; the resolver polls it: one GET for the batch, not one
    # per payout.
    double.process_payouts()
    gets_before = len(calls(double, "payouts.get"))
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert len(calls(double, "payouts.get")) == gets_before + 1
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["completed", "failed", "processing"]
    assert "RECEIVER_ACCOUNT_LOCKED" in (rows[1].failure_reason or "")
    earnings = await api.earnings(pro)
    # 95.00 - 10.00 paid - 30.00 still out; the failed 20.00 is back.
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("55.00", "10.00")

    # The unclaimed item is returned when its 30 days pass: failed, its amount back.
    double.set_payout_status(items[2]["payout_item_id"], "RETURNED")
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert (await payout_row(api.runtime, ids[2])).status == "failed"
    assert (await api.earnings(pro))["available_balance"] == "85.00"
    gets = calls(double, "payouts.get")
    assert gets and all(c.path == f"/v1/payments/payouts/{batch['payout_batch_id']}" for c in gets)
    assert len(calls(double, "payouts.create")) == 1
    assert_spec_checked(double, "payouts.create", "payouts.get")


async def test_a_batch_whose_answer_was_lost_is_never_paid_twice(
    api: Api, double: PayPalDouble
) -> None:
    pro, admin, requested = await payouts_to(
        api, double, [("a@example.com", "10.00"), ("b@example.com", "15.00")]
    )
    ids = [p["id"] for p in requested]
    key = f"payout-batch-{ids[0]}"
    double.fail_next("payouts.create", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    assert len(double.batches) == 1  # PayPal made it; we never heard
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [(r.status, r.batch_key, r.paypal_payout_id) for r in rows] == [
        ("processing", key, None)
    ] * 2
    # The batch job's next run leaves them alone: they are marked as sent.
    assert await payouts.send_batch(api.runtime, "paypal") == []

    # The resolver sends the same batch under the same key: PayPal answers the first one.
    outcome = await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert outcome == {ids[0]: "processing", ids[1]: "processing"}
    posts = calls(double, "payouts.create")
    wire = f"{PREFIX}-{key}"
    assert [(c.request_id, c.replayed) for c in posts] == [(wire, False), (wire, True)]
    assert len(double.batches) == 1 and len(double.items) == 2
    [batch] = double.batches.values()
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.paypal_payout_id for r in rows] == batch["item_ids"]

    # A second batch lost, and this time PayPal forgot the request id as well: the reused
    # sender_batch_id is refused with a link to the original, which is what we take.
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "5.00", "payment_method": "paypal"}
    )
    assert r.status_code == 201, r.text
    third = r.json()["id"]
    await api.post(f"/payments/payouts/{third}/process", admin)
    double.fail_next("payouts.create", "500_after")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    double.forget_request_ids()
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert [c.status for c in calls(double, "payouts.create")] == [201, 201, 500, 400]
    assert len(double.batches) == 2 and len(double.items) == 3
    assert (await payout_row(api.runtime, third)).paypal_payout_id in double.items

    double.process_payouts()
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert [(await payout_row(api.runtime, i)).status for i in [*ids, third]] == ["completed"] * 3
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("65.00", "30.00")
    assert_spec_checked(double, "payouts.create", "payouts.get")


# --------------------------------------------------------------------------- payout webhooks


async def test_payout_items_settled_by_webhooks(api: Api, double: PayPalDouble) -> None:
    pro, _admin, requested = await payouts_to(
        api,
        double,
        [
            ("paid@example.com", "10.00"),
            ("locked+fail@example.com", "20.00"),
            ("newcomer+unclaimed@example.com", "30.00"),
        ],
    )
    ids = [p["id"] for p in requested]
    await payouts.send_batch(api.runtime, "paypal")
    double.process_payouts()
    items = [(await payout_row(api.runtime, i)).paypal_payout_id or "" for i in ids]

    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(items[0])
    )
    await deliver(api, double, "PAYMENT.PAYOUTS-ITEM.FAILED", double.payout_item_resource(items[1]))
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.UNCLAIMED", double.payout_item_resource(items[2])
    )
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["completed", "failed", "processing"]
    assert "RECEIVER_ACCOUNT_LOCKED" in (rows[1].failure_reason or "")
    [unclaimed] = await alerts_of(api.runtime, "payout_unclaimed")
    assert f"#{ids[2]}" in unclaimed and "RECEIVER_UNREGISTERED" in unclaimed
    assert "payout.unclaimed" in await audit_actions(api.runtime, "payout", ids[2])
    # UNCLAIMED again changes nothing; RETURNED (30 days unclaimed) fails it.
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.UNCLAIMED", double.payout_item_resource(items[2])
    )
    assert len(await alerts_of(api.runtime, "payout_unclaimed")) == 1
    double.set_payout_status(items[2], "RETURNED")
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.RETURNED", double.payout_item_resource(items[2])
    )
    assert (await payout_row(api.runtime, ids[2])).status == "failed"
    # A late SUCCEEDED of the failed one never completes it.
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(items[1])
    )
    assert (await payout_row(api.runtime, ids[1])).status == "failed"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("85.00", "10.00")

    # A completed payout PayPal returns later (the receiver refused it): back to available.
    double.set_payout_status(items[0], "RETURNED")
    await deliver(
        api, double, "PAYMENT.PAYOUTS-ITEM.RETURNED", double.payout_item_resource(items[0])
    )
    assert (await payout_row(api.runtime, ids[0])).status == "failed"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("95.00", "0.00")
    # An item that is not ours: recorded, nothing applied.
    stranger = {
        **double.payout_item_resource(items[0]),
        "payout_item_id": "NOTOURS000001",
        "payout_item": {
            "receiver": "x@example.com",
            "amount": {"currency": "USD", "value": "1.00"},
            "sender_item_id": "invoice-77",
        },
    }
    await deliver(api, double, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", stranger)
    assert_spec_checked(double, "payouts.create", "payouts.get", "webhooks.verify")


@pytest.mark.parametrize("link", ["details", "none"])
async def test_a_duplicate_batch_paypal_does_not_link_is_never_treated_as_refused(
    link: Literal["details", "none"], api: Api, double: PayPalDouble
) -> None:
    """PayPal forgot the request id and refuses the reused sender_batch_id - with the link
    to the batch inside the error's detail, or with no link at all (both seen outside the
    spec). A refusal would hand the money back to the worker, who could then be paid
    twice: the link is followed, and without one the payouts stay processing until the
    items' webhooks (which carry our sender_item_id) settle them."""
    double.duplicate_batch_link = link
    pro, _admin, requested = await payouts_to(
        api, double, [("a@example.com", "10.00"), ("b+fail@example.com", "15.00")]
    )
    ids = [p["id"] for p in requested]
    double.fail_next("payouts.create", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    double.forget_request_ids()
    outcome = await payouts.resolve_payouts(api.runtime, now=stale(api))
    [batch] = double.batches.values()
    assert len(double.items) == 2
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["processing"] * 2
    if link == "details":
        assert [r.paypal_payout_id for r in rows] == batch["item_ids"]
    else:
        assert all(v.startswith("not resolved") for v in outcome.values()), outcome
        assert [r.paypal_payout_id for r in rows] == [None, None]
        # Sent again, never a refusal; PayPal has no look-up by sender_batch_id, so after
        # PAYPAL_DUPLICATE_BATCH_MAX_TRIES (3) the payouts are parked for an admin, alerted,
        # and never sent again.
        await payouts.resolve_payouts(api.runtime, now=stale(api))
        rows = [await payout_row(api.runtime, i) for i in ids]
        assert [r.status for r in rows] == ["processing"] * 2
        assert all((r.held_reason or "").startswith("batch_not_found: ") for r in rows)
        [unresolved] = await alerts_of(api.runtime, "payout_batch_unresolved")
        assert f"payout-batch-{ids[0]}" in unresolved
        assert len(await alerts_of(api.runtime, "payout_held")) == 2
        posts = len(calls(double, "payouts.create"))
        assert await payouts.resolve_payouts(api.runtime, now=stale(api)) == {}
        assert len(calls(double, "payouts.create")) == posts
    assert (await api.earnings(pro))["available_balance"] == "70.00"

    # PayPal pays the batch; its item webhooks name our payouts by sender_item_id.
    double.process_payouts()
    for item_id, event_type in zip(
        batch["item_ids"],
        ["PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "PAYMENT.PAYOUTS-ITEM.FAILED"],
        strict=True,
    ):
        await deliver(api, double, event_type, double.payout_item_resource(item_id))
    rows = [await payout_row(api.runtime, i) for i in ids]
    assert [r.status for r in rows] == ["completed", "failed"]
    assert [r.paypal_payout_id for r in rows] == batch["item_ids"]
    assert [r.held_reason for r in rows] == [None, None]  # the webhooks were the answer
    assert {r.paypal_batch_id for r in rows} == {batch["payout_batch_id"]}
    assert len(double.batches) == 1 and len(double.items) == 2
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("85.00", "10.00")


async def test_payout_batch_resend_stops_at_paypals_duplicate_window(
    api: Api, double: PayPalDouble
) -> None:
    """PayPal refuses a reused sender_batch_id for 30 days. A batch still unknown after 25
    is not sent again (it could be paid twice): an operator is told."""
    _pro, _admin, requested = await payouts_to(api, double, [("late@example.com", "10.00")])
    [payout_id] = [p["id"] for p in requested]
    double.fail_next("payouts.create", "500_before")
    with pytest.raises(ProviderUnavailableError):
        await payouts.send_batch(api.runtime, "paypal")
    assert double.batches == {}
    async with api.runtime.sessions() as session, session.begin():
        row = await session.get(WorkerPayout, payout_id)
        assert row is not None
        row.processed_at = now() - timedelta(days=26)
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    assert double.batches == {} and len(calls(double, "payouts.create")) == 1
    assert (await payout_row(api.runtime, payout_id)).status == "processing"
    [unresolved] = await alerts_of(api.runtime, "payout_batch_unresolved")
    assert "not sent again" in unresolved


async def test_end_to_end_with_the_worker(api: Api, double: PayPalDouble) -> None:
    """The jobs as production runs them: the batch job sends the payout an admin processed,
    PayPal's webhook is verified on receipt and applied by its processing job."""
    async with running_worker(api.runtime, concurrency=2, name="paypal-e2e"):
        _, pro, _ = await released(api, double, "50.00")
        r = await api.client.put(
            "/api/v1/payments/payout-methods",
            json={"paypal_email": "pro@example.com"},
            headers=pro.headers,
        )
        assert r.status_code == 200, r.text
        r = await api.post(
            "/payments/payouts/request", pro, {"amount": "47.50", "payment_method": "paypal"}
        )
        assert r.status_code == 201, r.text
        payout_id = r.json()["id"]
        admin = await api.admin()
        r = await api.post(f"/payments/payouts/{payout_id}/process", admin)
        assert r.status_code == 200, r.text

        async def sent() -> str | None:
            return (await payout_row(api.runtime, payout_id)).paypal_payout_id

        item_id = await eventually(sent)
        double.process_payouts()
        headers, body = double.deliver(
            "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(item_id)
        )
        r = await post_webhook(api, headers, body)
        assert r.status_code == 200, r.text

        async def completed() -> bool:
            return (await payout_row(api.runtime, payout_id)).status == "completed"

        await eventually(completed)
    [batch] = double.batches.values()
    assert batch["sender_batch_header"]["sender_batch_id"] == f"{PREFIX}-payout-batch-{payout_id}"
    earnings = await api.earnings(pro)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("0.00", "47.50")
    [delivery] = await deliveries(api.runtime)
    assert delivery.status == DeliveryStatus.PROCESSED
