"""An admin's payout controls (payouts/controls.py) and the payout delay (payouts/delay.py):
a rejected payout's amount is back on the available balance to the minor unit and the
worker is told; a held payout is never sent until its hold is released; many payouts are
processed in one call, each on its own; payouts are listed by status; released money is
withdrawable only PAYOUT_DELAY_HOURS after its release."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict
from handwork_payments.ledger.repository import entry_exists
from handwork_payments.models import MarketplaceEvent, PayoutStatus, User
from handwork_payments.payouts import controls, delay, service
from handwork_payments.providers.base import ProviderUnavailableError
from handwork_payments.runtime import Runtime
from tests.faults import audit_actions, earner, payout_row, provider_objects, requested, simulator
from tests.helpers import Api, Party


async def earner_in(api: Api, amount: str, currency: str) -> tuple[Party, Party]:
    """A worker with a released payment of `amount` in `currency` and a Stripe account."""
    client, worker, payment = await api.held_payment(amount, currency)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": f"acct_1Worker{worker.id}"},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    return worker, await api.admin()


async def runtime_user(runtime: Runtime, user_id: int) -> User:
    async with runtime.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user


async def send_jobs(runtime: Runtime, payout_id: int) -> int:
    async with runtime.sessions() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'hp:send_payout' "
                "AND args->>'payout_id' = :id"
            ),
            {"id": str(payout_id)},
        )
        return int(count or 0)


async def events(runtime: Runtime, *types: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(MarketplaceEvent)
            .where(MarketplaceEvent.type.in_(types))
            .order_by(MarketplaceEvent.id)
        )
        return [{"type": e.type, **e.data} for e in rows.all()]


async def act(
    api: Api, admin: Party, payout_id: int, action: str, reason: str | None = "Why"
) -> httpx.Response:
    body = None if reason is None else {"reason": reason}
    return await api.post(f"/payments/payouts/{payout_id}/{action}", admin, body)


@pytest.mark.parametrize(
    ("currency", "paid", "share", "asked", "left", "zero"),
    [
        ("USD", "100.00", "95.00", "60.00", "35.00", "0.00"),
        ("JPY", "10000", "9500", "6001", "3499", "0"),
        ("KWD", "10.000", "9.500", "6.125", "3.375", "0.000"),
    ],
)
async def test_a_rejected_payout_returns_its_exact_amount_and_the_worker_is_told(
    api: Api,
    runtime: Runtime,
    currency: str,
    paid: str,
    share: str,
    asked: str,
    left: str,
    zero: str,
) -> None:
    worker, admin = await earner_in(api, paid, currency)
    r = await api.post(
        "/payments/payouts/request",
        worker,
        {"amount": asked, "payment_method": "stripe", "currency": currency},
    )
    assert r.status_code == 201, r.text
    payout_id = r.json()["id"]
    earnings = await api.earnings(worker, currency)
    assert (earnings["available_balance"], earnings["pending_payouts"]) == (left, asked)
    assert earnings["available_soon"] == zero  # no delay by default

    r = await act(api, admin, payout_id, "reject", "  Account details look wrong  ")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["held"]) == ("failed", False)
    assert r.json()["failure_reason"] == "rejected by an admin: Account details look wrong"
    earnings = await api.earnings(worker, currency)
    assert (earnings["available_balance"], earnings["pending_payouts"]) == (share, zero)
    assert (earnings["total_earned"], earnings["total_paid_out"]) == (share, zero)
    async with runtime.sessions() as session:
        assert await entry_exists(session, f"payout-{payout_id}-failed")
    told = await events(runtime, "payout.rejected", "balance.available")
    assert [(e["type"], e.get("status"), e.get("amount")) for e in told[-2:]] == [
        ("payout.rejected", "failed", asked),
        ("balance.available", None, asked),
    ]
    assert told[-1]["available_balance"] == share
    assert (await audit_actions(runtime, "payout", payout_id))[-1] == "payout.rejected"
    # Once: a failed payout is not rejected again, and nothing moves.
    again = await act(api, admin, payout_id, "reject")
    assert again.status_code == 409, again.text
    assert (await api.earnings(worker, currency))["available_balance"] == share


async def test_what_may_be_rejected(api: Api, runtime: Runtime) -> None:
    worker, admin = await earner(api)  # 95.00 available
    processing = await requested(api, worker, "10.00", "stripe")
    assert (await api.post(f"/payments/payouts/{processing['id']}/process", admin)).is_success
    # Processing and not held: it may be at the provider right now.
    r = await act(api, admin, processing["id"], "reject")
    assert r.status_code == 409 and "hold it first" in r.json()["detail"], r.text
    # Held first, it is rejected; its send job then finds it failed and sends nothing.
    assert (await act(api, admin, processing["id"], "hold")).status_code == 200
    r = await act(api, admin, processing["id"], "reject", "Fraud suspected")
    assert (r.status_code, r.json()["status"], r.json()["held"]) == (200, "failed", False)
    await service.send(runtime, processing["id"])
    assert await provider_objects(runtime, "stripe", "transfer") == 0
    # Completed: too late.
    done = await requested(api, worker, "20.00", "stripe")
    assert (await api.post(f"/payments/payouts/{done['id']}/process", admin)).is_success
    await service.send(runtime, done["id"])
    assert (await payout_row(runtime, done["id"])).status == PayoutStatus.COMPLETED
    r = await act(api, admin, done["id"], "reject")
    assert r.status_code == 409 and r.json()["detail"] == "A completed payout cannot be rejected"
    # Unknown payout, no reason, a blank reason, an unknown field: refused, nothing moves.
    assert (await act(api, admin, 999_999, "reject")).status_code == 404
    assert (await act(api, admin, done["id"], "reject", None)).status_code == 422
    assert (await act(api, admin, done["id"], "reject", "   ")).status_code == 422
    r = await api.post(f"/payments/payouts/{done['id']}/reject", admin, {"why": "x"})
    assert r.status_code == 422
    assert (await act(api, worker, done["id"], "reject")).status_code == 403
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("75.00", "20.00")


async def test_a_held_payout_is_never_sent_until_the_hold_is_released(
    api: Api, runtime: Runtime
) -> None:
    worker, admin = await earner(api)
    payout = await requested(api, worker, "60.00", "stripe")
    payout_id = payout["id"]
    assert (await api.post(f"/payments/payouts/{payout_id}/process", admin)).is_success
    r = await act(api, admin, payout_id, "hold", "Checking the account")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["held"]) == ("processing", True)
    assert (await payout_row(runtime, payout_id)).held_reason == "admin: Checking the account"
    assert (await act(api, admin, payout_id, "hold")).status_code == 409  # held already

    # The send job runs: nothing goes to the provider; nor does the resolver send it.
    await service.send(runtime, payout_id)
    later = now() + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)
    assert await service.resolve_payouts(runtime, now=later) == {}
    assert await provider_objects(runtime, "stripe", "transfer") == 0
    assert (await payout_row(runtime, payout_id)).attempts == 0
    worker_view = await api.get("/payments/payouts", worker)
    assert [(p["id"], p["held"]) for p in worker_view["items"]] == [(payout_id, True)]

    # Released: a send job is queued again in the same commit, and it sends once.
    assert await send_jobs(runtime, payout_id) == 1
    r = await act(api, admin, payout_id, "release-hold", None)
    assert (r.status_code, r.json()["held"]) == (200, False)
    assert await send_jobs(runtime, payout_id) == 2
    assert (await act(api, admin, payout_id, "release-hold", None)).status_code == 409
    await service.send(runtime, payout_id)
    await service.send(runtime, payout_id)  # the first job, run late: nothing more
    done = await payout_row(runtime, payout_id)
    assert (done.status, done.held_reason, done.attempts) == (PayoutStatus.COMPLETED, None, 1)
    assert await provider_objects(runtime, "stripe", "transfer") == 1
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["total_paid_out"]) == ("35.00", "60.00")
    assert await audit_actions(runtime, "payout", payout_id) == [
        "payout.requested",
        # A worker's first payout goes to review under RISK_MODE=enforce; the tests run in
        # development's observe mode, which only records it.
        "payout.risk_observed",
        "payout.processing",
        "payout.held",
        "payout.released",
        "payout.completed",
    ]
    assert (await act(api, admin, payout_id, "hold")).status_code == 409  # completed


async def test_a_held_pending_payout_cannot_be_processed_until_released(
    api: Api, runtime: Runtime
) -> None:
    worker, admin = await earner(api)
    payout_id = (await requested(api, worker, "10.00", "paypal"))["id"]
    assert (await act(api, admin, payout_id, "hold")).json()["status"] == "pending"
    r = await api.post(f"/payments/payouts/{payout_id}/process", admin)
    assert r.status_code == 409 and "is held (admin: Why)" in r.json()["detail"], r.text
    assert (await act(api, admin, payout_id, "release-hold", None)).json()["status"] == "pending"
    r = await api.post(f"/payments/payouts/{payout_id}/process", admin)
    assert r.status_code == 200, r.text
    # A PayPal payout held while processing is left out of every batch until released.
    assert (await act(api, admin, payout_id, "hold")).status_code == 200
    assert await service.send_batch(runtime, "paypal") == []
    assert (await act(api, admin, payout_id, "release-hold", None)).status_code == 200
    assert await service.send_batch(runtime, "paypal") == [payout_id]
    assert await provider_objects(runtime, "paypal", "payout_item") == 1


async def test_a_payout_sent_or_parked_otherwise_is_not_the_admin_hold_s(
    api: Api, runtime: Runtime
) -> None:
    worker, admin = await earner(api)
    payout_id = (await requested(api, worker, "10.00", "stripe"))["id"]
    assert (await api.post(f"/payments/payouts/{payout_id}/process", admin)).is_success
    await simulator(runtime).inject_fault("send_payout", "timeout")
    with pytest.raises(ProviderUnavailableError):
        await service.send(runtime, payout_id)  # sent, the answer lost
    r = await act(api, admin, payout_id, "hold")
    assert r.status_code == 409 and "too late" in r.json()["detail"], r.text
    r = await act(api, admin, payout_id, "release-hold", None)
    assert r.json()["detail"] == f"Payout #{payout_id} is not held by an admin"
    # Parked by the system (a clawback debt): released by the system or `payouts decide`.
    pending = (await requested(api, worker, "50.00", "stripe"))["id"]
    assert (await api.post(f"/payments/payouts/{pending}/process", admin)).is_success
    r = await api.post("/payments/refund", admin, {"payment_id": 1, "reason": "job not done"})
    assert r.status_code == 200, r.text
    await service.send(runtime, pending)
    r = await act(api, admin, pending, "release-hold", None)
    assert r.status_code == 409 and "(held: negative_balance;" in r.json()["detail"], r.text
    assert (await act(api, admin, pending, "hold")).status_code == 409


async def test_many_payouts_are_processed_in_one_call_each_on_its_own(
    api: Api, runtime: Runtime
) -> None:
    worker, admin = await earner(api)
    first, second, held, done = [
        (await requested(api, worker, amount, "stripe"))["id"]
        for amount in ("10.00", "20.00", "5.00", "1.00")
    ]
    assert (await act(api, admin, held, "hold")).status_code == 200
    assert (await api.post(f"/payments/payouts/{done}/process", admin)).is_success
    r = await api.post(
        "/payments/payouts/process", admin, {"ids": [first, 999_999, held, second, done]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(p["id"], p["status"]) for p in body["items"]] == [
        (first, "processing"),
        (second, "processing"),
    ]
    assert body["errors"] == [
        {"id": 999_999, "detail": "Payout not found"},
        {"id": held, "detail": f"Payout #{held} is held (admin: Why): release it first"},
        {"id": done, "detail": "A processing payout cannot become processing"},
    ]
    # One send job each, as by the single `process`; a second call processes nothing.
    assert [await send_jobs(runtime, i) for i in (first, second, held, done)] == [1, 1, 0, 1]
    again = (await api.post("/payments/payouts/process", admin, {"ids": [first]})).json()
    assert again["items"] == [] and len(again["errors"]) == 1
    assert await send_jobs(runtime, first) == 1
    for bad in (
        {"ids": []},
        {"ids": list(range(1, 102))},
        {"ids": [first, first]},
        {"ids": ["x"]},
        {"ids": [0]},
        {},
        {"ids": [first], "more": 1},
    ):
        r = await api.post("/payments/payouts/process", admin, bad)
        assert r.status_code == 422, (bad, r.text)
    assert (await api.post("/payments/payouts/process", worker, {"ids": [held]})).status_code == 403
    assert (await payout_row(runtime, held)).status == PayoutStatus.PENDING


async def test_payouts_are_listed_by_status(api: Api, runtime: Runtime) -> None:
    worker, admin = await earner(api)
    other, _ = await earner(api)
    mine = [(await requested(api, worker, a, "stripe"))["id"] for a in ("10.00", "20.00")]
    theirs = (await requested(api, other, "30.00", "stripe"))["id"]
    assert (await api.post(f"/payments/payouts/{mine[0]}/process", admin)).is_success

    def ids(page: dict[str, Any]) -> list[int]:
        return [p["id"] for p in page["items"]]

    assert ids(await api.get("/payments/payouts", admin, status="pending")) == [theirs, mine[1]]
    assert ids(await api.get("/payments/payouts", admin, status="processing")) == [mine[0]]
    assert ids(await api.get("/payments/payouts", worker, status="pending")) == [mine[1]]
    assert ids(await api.get("/payments/payouts", other, status="processing")) == []
    assert ids(await api.get("/payments/payouts", worker)) == [mine[1], mine[0]]
    page = await api.get("/payments/payouts", admin, status="pending", limit=1)
    assert (ids(page), page["total"]) == ([theirs], 2)
    for bad in ("held", "PENDING", ""):
        r = await api.client.get(
            "/api/v1/payments/payouts", params={"status": bad}, headers=admin.headers
        )
        assert r.status_code == 422, (bad, r.text)


async def test_released_money_is_withdrawable_only_after_the_delay(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "payout_delay_hours", 48)
    worker, admin = await earner(api)  # 95.00 released now
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["available_soon"]) == ("0.00", "95.00")
    assert earnings["total_earned"] == "95.00"
    # Refunded in part within the delay (20.00, of which 19.00 the worker's): taken from
    # the money still in the delay.
    r = await api.post(
        "/payments/refund", admin, {"payment_id": 1, "amount": "20.00", "reason": "Partly"}
    )
    assert r.status_code == 200, r.text
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["available_soon"]) == ("0.00", "76.00")
    r = await api.post(
        "/payments/payouts/request", worker, {"amount": "0.01", "payment_method": "stripe"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "Insufficient available balance: 0.00 USD"

    # 47 hours later: still in the delay. 48 hours and a second later: withdrawable.
    start = now()
    monkeypatch.setattr(delay, "now", lambda: start + timedelta(hours=47))
    assert (await api.earnings(worker))["available_soon"] == "76.00"
    monkeypatch.setattr(delay, "now", lambda: start + timedelta(hours=48, seconds=1))
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["available_soon"]) == ("76.00", "0.00")
    r = await api.post(
        "/payments/payouts/request", worker, {"amount": "76.01", "payment_method": "stripe"}
    )
    assert r.status_code == 400 and r.json()["detail"].endswith("76.00 USD"), r.text
    payout = await requested(api, worker, "70.00", "stripe")
    earnings = await api.earnings(worker)
    assert (earnings["available_balance"], earnings["pending_payouts"]) == ("6.00", "70.00")
    # A rejected payout's amount is withdrawable at once: it was before it was requested.
    assert (await act(api, admin, payout["id"], "reject")).status_code == 200
    assert (await api.earnings(worker))["available_balance"] == "76.00"


def test_the_delay_splits_a_balance() -> None:
    assert delay.split(9500, 0) == (9500, 0)
    assert delay.split(9500, 2000) == (7500, 2000)
    assert delay.split(1000, 2000) == (0, 1000)  # clawed back meanwhile: soon <= balance
    assert delay.split(-500, 2000) == (-500, 0)  # a debt: nothing is coming


async def test_a_hold_racing_the_send_job_either_stops_it_or_is_refused(
    api: Api, runtime: Runtime
) -> None:
    """Both take the payout's lock; the job marks its attempt before calling the provider.
    Whichever wins, a held payout is never at the provider, and a sent one is never held."""
    worker, admin = await earner(api)
    admin_user = await runtime_user(runtime, admin.id)
    for _ in range(3):
        payout_id = (await requested(api, worker, "1.00", "stripe"))["id"]
        assert (await api.post(f"/payments/payouts/{payout_id}/process", admin)).is_success
        held, sent = await asyncio.gather(
            controls.hold(runtime, admin_user, payout_id, "race"),
            service.send(runtime, payout_id),
            return_exceptions=True,
        )
        assert not isinstance(sent, BaseException), sent
        row = await payout_row(runtime, payout_id)
        at_provider = await provider_objects(
            runtime, "stripe", "transfer", metadata={"payout_id": str(payout_id)}
        )
        if isinstance(held, Conflict):
            assert (row.status, row.held_reason, at_provider) == (PayoutStatus.COMPLETED, None, 1)
        else:
            assert (row.status, row.attempts, at_provider) == (PayoutStatus.PROCESSING, 0, 0)
            assert row.held_reason == "admin: race"
