"""Payouts when the provider does not answer: the payout stays `processing` with the
attempt recorded, and the resolver asks the provider again under the same key before it
ever calls again. A transfer made in fact is found and completed, never made twice; one
that failed in fact fails the payout and gives the balance back. PayPal payouts go out in
batches."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from handwork_payments.kit.clock import now
from handwork_payments.models import PayoutStatus
from handwork_payments.payouts import service
from handwork_payments.providers.base import ProviderUnavailableError
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.faults import earner, payout_row, provider_objects, requested, simulator
from tests.helpers import Api, Party


def later(runtime: Runtime) -> datetime:
    return now() + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)


async def processed(api: Api, amount: str, method: str) -> tuple[int, Party]:
    """A payout of `amount` requested and processed (its job left queued: no worker)."""
    worker, admin = await earner(api)
    payout = await requested(api, worker, amount, method)
    r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    assert r.status_code == 200 and r.json()["status"] == "processing", r.text
    return int(payout["id"]), worker


async def transfers_for(runtime: Runtime, payout_id: int) -> int:
    return await provider_objects(
        runtime, "stripe", "transfer", metadata={"payout_id": str(payout_id)}
    )


async def test_a_transfer_made_in_fact_is_found_and_completed_once(
    api: Api, runtime: Runtime
) -> None:
    payout_id, worker = await processed(api, "60.00", "stripe")
    await simulator(runtime).inject_fault("send_payout", "timeout_after_success")
    with pytest.raises(ProviderUnavailableError):
        await service.send(runtime, payout_id)
    stuck = await payout_row(runtime, payout_id)
    assert stuck.status == PayoutStatus.PROCESSING and stuck.attempts == 1
    assert stuck.stripe_transfer_id is None and stuck.last_attempt_at is not None
    assert await transfers_for(runtime, payout_id) == 1  # made, the answer lost

    assert await service.resolve_payouts(runtime, now=now()) == {}  # not stale yet
    outcome = await service.resolve_payouts(runtime, now=later(runtime))
    assert outcome == {payout_id: "completed"}
    done = await payout_row(runtime, payout_id)
    assert done.status == PayoutStatus.COMPLETED and done.attempts == 2
    assert done.stripe_transfer_id and done.stripe_transfer_id.startswith("tr_")
    assert await transfers_for(runtime, payout_id) == 1  # no second transfer
    earnings = await api.earnings(worker)
    assert earnings["total_paid_out"] == "60.00" and earnings["available_balance"] == "35.00"


async def test_a_transfer_that_failed_in_fact_fails_the_payout_and_returns_the_balance(
    api: Api, runtime: Runtime
) -> None:
    payout_id, worker = await processed(api, "60.00", "stripe")
    await simulator(runtime).inject_fault("send_payout", "timeout")  # never made
    with pytest.raises(ProviderUnavailableError):
        await service.send(runtime, payout_id)
    assert (await api.earnings(worker))["available_balance"] == "35.00"
    # Asked again: no such transfer; sent again under the same key, and refused.
    await simulator(runtime).inject_fault("send_payout", "error")
    outcome = await service.resolve_payouts(runtime, now=later(runtime))
    assert outcome == {payout_id: "failed"}
    failed = await payout_row(runtime, payout_id)
    assert failed.status == PayoutStatus.FAILED and failed.failure_reason
    assert await transfers_for(runtime, payout_id) == 0
    earnings = await api.earnings(worker)
    assert earnings["available_balance"] == "95.00" and earnings["total_paid_out"] == "0.00"
    admin = await api.admin()
    alerts = (await api.get("/admin/alerts", admin))["items"]
    assert [(a["kind"], a["object_id"]) for a in alerts] == [("payout_failed", payout_id)]


async def test_a_transfer_never_made_is_made_once_by_the_resolver(
    api: Api, runtime: Runtime
) -> None:
    payout_id, _ = await processed(api, "10.00", "stripe")
    await simulator(runtime).inject_fault("send_payout", "timeout")
    with pytest.raises(ProviderUnavailableError):
        await service.send(runtime, payout_id)
    assert await transfers_for(runtime, payout_id) == 0
    outcome = await service.resolve_payouts(runtime, now=later(runtime))
    assert outcome == {payout_id: "completed"}
    assert await transfers_for(runtime, payout_id) == 1


async def test_a_lost_send_job_is_sent_by_the_resolver(api: Api, runtime: Runtime) -> None:
    payout_id, _ = await processed(api, "10.00", "stripe")  # its job never runs here
    outcome = await service.resolve_payouts(runtime, now=later(runtime))
    assert outcome == {payout_id: "completed"}


# --- PayPal batches -------------------------------------------------------------------------


async def test_paypal_payouts_go_out_in_one_batch(api: Api, runtime: Runtime) -> None:
    ids = [(await processed(api, amount, "paypal"))[0] for amount in ("10.00", "20.00", "30.00")]
    assert await service.send_batch(runtime, "paypal") == ids
    assert await service.send_batch(runtime, "paypal") == []
    rows = [await payout_row(runtime, i) for i in ids]
    assert {r.status for r in rows} == {PayoutStatus.COMPLETED}
    assert {r.batch_key for r in rows} == {f"payout-batch-{ids[0]}"}
    assert len({r.paypal_batch_id for r in rows}) == 1 and rows[0].paypal_batch_id
    assert len({r.paypal_payout_id for r in rows}) == 3
    assert await provider_objects(runtime, "paypal", "payout_item") == 3
    # Stripe has no batches: its payouts go one by one.
    assert await service.send_batch(runtime, "stripe") == []


async def test_payout_batch_size_is_a_limit(api: Api, runtime: Runtime, database_url: str) -> None:
    ids = [(await processed(api, "5.00", "paypal"))[0] for _ in range(3)]
    small = Runtime.build(make_settings(database_url, payout_batch_size=2), database_url)
    try:
        assert await service.send_batch(small, "paypal") == ids[:2]
        assert await service.send_batch(small, "paypal") == ids[2:]
    finally:
        await small.aclose()
    keys = [(await payout_row(runtime, i)).batch_key for i in ids]
    assert keys == [f"payout-batch-{ids[0]}", f"payout-batch-{ids[0]}", f"payout-batch-{ids[2]}"]


async def test_a_batch_whose_answer_is_lost_is_sent_again_whole_and_pays_once(
    api: Api, runtime: Runtime
) -> None:
    ids = [(await processed(api, amount, "paypal"))[0] for amount in ("10.00", "20.00")]
    await simulator(runtime, "paypal").inject_fault("send_payout_batch", "timeout_after_success")
    with pytest.raises(ProviderUnavailableError):
        await service.send_batch(runtime, "paypal")
    rows = [await payout_row(runtime, i) for i in ids]
    assert {r.status for r in rows} == {PayoutStatus.PROCESSING}
    assert {r.attempts for r in rows} == {1} and rows[0].batch_key == rows[1].batch_key
    assert await provider_objects(runtime, "paypal", "payout_item") == 2  # paid, unheard

    assert await service.send_batch(runtime, "paypal") == []  # never sent in a new batch
    outcome = await service.resolve_payouts(runtime, now=later(runtime))
    assert outcome == {ids[0]: "completed", ids[1]: "completed"}
    assert await provider_objects(runtime, "paypal", "payout_item") == 2


async def test_a_refused_item_fails_alone(api: Api, runtime: Runtime) -> None:
    good, _ = await processed(api, "10.00", "paypal")
    worker, admin = await earner(api)
    # Our check lets this address through; PayPal refuses the receiver.
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"paypal_email": "pro@example.c."},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    bad = await requested(api, worker, "15.00", "paypal")
    await api.post(f"/payments/payouts/{bad['id']}/process", admin)
    assert await service.send_batch(runtime, "paypal") == [good, bad["id"]]
    assert (await payout_row(runtime, good)).status == PayoutStatus.COMPLETED
    refused = await payout_row(runtime, bad["id"])
    assert refused.status == PayoutStatus.FAILED and "Receiver" in (refused.failure_reason or "")
    assert (await api.earnings(worker))["available_balance"] == "95.00"


async def test_a_batch_refused_whole_fails_every_payout(api: Api, runtime: Runtime) -> None:
    ids = [(await processed(api, "10.00", "paypal"))[0] for _ in range(2)]
    await simulator(runtime, "paypal").inject_fault("send_payout_batch", "error")
    assert await service.send_batch(runtime, "paypal") == ids
    assert {(await payout_row(runtime, i)).status for i in ids} == {PayoutStatus.FAILED}
