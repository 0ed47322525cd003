"""Payouts parked for an admin (payouts/holds.py): a transfer the provider holds under our
key that is not this payout is never settled; a payout whose worker owes money after a
clawback is not sent until later earnings cover the debt."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import BadRequest, Conflict
from handwork_payments.ledger.repository import entry_exists
from handwork_payments.models import Alert, PayoutStatus
from handwork_payments.payouts import service
from handwork_payments.payouts.decisions import decide
from handwork_payments.providers.base import PayoutOrder, ProviderUnavailableError
from handwork_payments.runtime import Runtime
from tests.faults import earner, payout_row, provider_objects, requested, simulator
from tests.helpers import Api, Party


def later(runtime: Runtime) -> datetime:
    return now() + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)


async def alerts(runtime: Runtime, kind: str) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(Alert.message).where(Alert.kind == kind))
        return list(rows.all())


async def processed(api: Api, worker: Party, admin: Party, amount: str) -> int:
    payout = await requested(api, worker, amount, "stripe")
    r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    assert r.status_code == 200, r.text
    return int(payout["id"])


async def test_a_transfer_under_our_key_that_is_not_the_payout_is_never_settled(
    api: Api, runtime: Runtime
) -> None:
    worker, admin = await earner(api)
    payout_id = await processed(api, worker, admin, "60.00")
    # The provider remembers payout-{id} from before this database was restored: 12.34 to
    # another account, under this installation's own key.
    sim = simulator(runtime)
    await sim.send_payout(
        PayoutOrder(payout_id=payout_id, destination="acct_1Other", amount=1234, currency="USD")
    )
    # Our call's answer is lost; the resolver asks the provider under the same key.
    await sim.inject_fault("send_payout", "timeout")
    with pytest.raises(ProviderUnavailableError):
        await service.send(runtime, payout_id)
    outcome = await service.resolve_payouts(runtime, now=later(runtime))

    held = await payout_row(runtime, payout_id)
    assert outcome == {payout_id: "processing"}
    assert held.status == PayoutStatus.PROCESSING and held.stripe_transfer_id is None
    assert held.held_reason is not None and held.held_reason.startswith("mismatch: ")
    assert "amount 1234 != 6000" in held.held_reason and "acct_1Other" in held.held_reason
    [message] = await alerts(runtime, "payout_held")
    assert f"Payout #{payout_id}" in message
    async with runtime.sessions() as session:
        assert not await entry_exists(session, f"payout-{payout_id}-complete")
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("35.00", "0.00")
    # Never re-queried, re-sent or settled while held.
    assert await service.resolve_payouts(runtime, now=later(runtime)) == {}
    assert (await service.send(runtime, payout_id)) is not None
    assert await provider_objects(runtime, "stripe", "transfer") == 1
    assert len(await alerts(runtime, "payout_held")) == 1

    # The admin checks the provider: nothing was paid to this worker. Failed, with the
    # admin's reason; the 60.00 back.
    with pytest.raises(BadRequest):
        await decide(runtime, payout_id, "fail", " ", actor_id=None)
    failed = await decide(runtime, payout_id, "fail", "not ours at Stripe", actor_id=None)
    assert (failed.status, failed.held_reason) == (PayoutStatus.FAILED, None)
    assert (failed.failure_reason or "").startswith("admin: not ours at Stripe (was: mismatch")
    assert (await api.earnings(worker))["available_balance"] == "95.00"
    with pytest.raises(Conflict):
        await decide(runtime, payout_id, "complete", "again", actor_id=None)


async def test_a_payout_waits_while_its_worker_owes_a_clawback_and_goes_once_repaid(
    api: Api, runtime: Runtime
) -> None:
    worker, admin = await earner(api)  # 95.00 available from payment #1
    payout_id = await processed(api, worker, admin, "60.00")  # 35.00 left
    # The released payment is refunded in full: 95.00 clawed back, the balance is -60.00.
    r = await api.post("/payments/refund", admin, {"payment_id": 1, "reason": "job not done"})
    assert r.status_code == 200, r.text
    assert (await api.earnings(worker))["available_balance"] == "-60.00"

    await service.send(runtime, payout_id)
    assert await provider_objects(runtime, "stripe", "transfer") == 0  # not sent
    held = await payout_row(runtime, payout_id)
    assert held.status == PayoutStatus.PROCESSING and held.attempts == 0
    assert (held.held_reason or "").startswith("negative_balance: ")
    assert len(await alerts(runtime, "payout_held")) == 1
    # Still in debt: the resolver keeps it parked.
    assert await service.resolve_payouts(runtime, now=later(runtime)) == {}

    # New earnings pay the debt off (95.00 - 60.00 = 35.00): released, then sent once.
    client = await api.user("client")
    booking = await api.booking(client, worker, "100.00")
    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201, r.text
    r = await api.post(f"/payments/{r.json()['id']}/release", client)
    assert r.status_code == 200, r.text
    assert await service.resolve_payouts(runtime, now=now()) == {payout_id: "released"}
    await service.send(runtime, payout_id)
    done = await payout_row(runtime, payout_id)
    assert (done.status, done.held_reason) == (PayoutStatus.COMPLETED, None)
    assert await provider_objects(runtime, "stripe", "transfer") == 1
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("35.00", "60.00")
