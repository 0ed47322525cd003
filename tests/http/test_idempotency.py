"""Idempotency-Key (http/idempotency.py), as API_CONTRACT.md says: the same key and body
answer the first response again without acting twice; the same key with another body is a
422; a key whose first request still runs is a 409; keys belong to their user; an answer
of 5xx is not kept, so the retry acts."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from handwork_payments.app import create_app
from handwork_payments.http.idempotency import MAX_KEY_LENGTH
from handwork_payments.models import (
    IdempotencyRecord,
    JournalEntry,
    Payment,
    PaymentRefund,
    SimulatedObject,
    WorkerPayout,
)
from handwork_payments.providers.simulated import SimulatedProvider
from handwork_payments.runtime import Runtime
from tests.helpers import Api, Party


def keyed(party: Party, key: str) -> dict[str, str]:
    return {**party.headers, "Idempotency-Key": key}


async def count(runtime: Runtime, model: Any) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def counts(runtime: Runtime) -> dict[str, int]:
    models = (Payment, PaymentRefund, WorkerPayout, JournalEntry, SimulatedObject)
    return {m.__tablename__: await count(runtime, m) for m in models}


def simulator(runtime: Runtime) -> SimulatedProvider:
    provider = runtime.providers.stripe
    assert isinstance(provider, SimulatedProvider)
    return provider


async def worker_with_balance(api: Api, amount: str = "100.00") -> tuple[Party, Party]:
    """A worker with `amount` x 95% available and a Stripe payout method."""
    client, worker, payment = await api.held_payment(amount)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": f"acct_1Idem{worker.id}"},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    return client, worker


def assert_replay(first: httpx.Response, again: httpx.Response) -> None:
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.status_code == first.status_code
    assert again.json() == first.json()


async def test_the_same_key_and_body_replays_a_payment_and_pays_once(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker, "150.00")
    body = {"booking_id": booking["id"], "amount": "150.00", "currency": "USD"}
    body["payment_method"] = "pm_card_visa"
    url = "/api/v1/payments/stripe/payment-intent"

    first = await api.client.post(url, json=body, headers=keyed(client, "pay-1"))
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "held"
    after_first = await counts(runtime)
    again = await api.client.post(url, json=body, headers=keyed(client, "pay-1"))
    assert_replay(first, again)
    assert await counts(runtime) == after_first
    assert after_first["payments"] == 1


async def test_the_same_key_and_body_requests_one_payout(api: Api, runtime: Runtime) -> None:
    _, worker = await worker_with_balance(api)
    body = {"amount": "30.00", "payment_method": "stripe"}
    url = "/api/v1/payments/payouts/request"
    answers = [
        await api.client.post(url, json=body, headers=keyed(worker, "payout-1")) for _ in range(3)
    ]
    assert answers[0].status_code == 201, answers[0].text
    for again in answers[1:]:
        assert_replay(answers[0], again)
    assert await count(runtime, WorkerPayout) == 1
    earnings = await api.earnings(worker)
    assert earnings["available_balance"] == "65.00"
    assert earnings["pending_payouts"] == "30.00"
    async with runtime.sessions() as session:
        entries = await session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == "payout_reserve")
        )
    assert entries == 1


async def test_the_same_key_and_body_refunds_once(api: Api, runtime: Runtime) -> None:
    _, worker, payment = await api.held_payment("100.00")
    body = {"payment_id": payment["id"], "amount": "10.00", "reason": "Part of the job"}
    url = "/api/v1/payments/refund"
    first = await api.client.post(url, json=body, headers=keyed(worker, "refund-1"))
    assert first.status_code == 200, first.text
    entries = await count(runtime, JournalEntry)
    again = await api.client.post(url, json=body, headers=keyed(worker, "refund-1"))
    assert_replay(first, again)
    assert again.json()["refunded_amount"] == "10.00"
    assert await count(runtime, PaymentRefund) == 1
    assert await count(runtime, JournalEntry) == entries
    current = await api.get(f"/payments/{payment['id']}", worker)
    assert current["refunded_amount"] == "10.00"


async def test_an_error_answer_is_replayed_too(api: Api, runtime: Runtime) -> None:
    """The first response is the answer to the key, whatever it was: a later balance
    that would allow the payout does not turn the replay into a payout."""
    worker = await api.user("worker")
    body = {"amount": "5.00", "payment_method": "stripe"}
    url = "/api/v1/payments/payouts/request"
    first = await api.client.post(url, json=body, headers=keyed(worker, "early"))
    assert first.status_code == 400, first.text
    again = await api.client.post(url, json=body, headers=keyed(worker, "early"))
    assert_replay(first, again)
    assert await count(runtime, WorkerPayout) == 0


async def test_the_same_key_with_another_body_or_path_is_a_422(api: Api, runtime: Runtime) -> None:
    _, worker = await worker_with_balance(api)
    url = "/api/v1/payments/payouts/request"
    first = await api.client.post(
        url, json={"amount": "10.00", "payment_method": "stripe"}, headers=keyed(worker, "k")
    )
    assert first.status_code == 201, first.text
    for other in (
        {"amount": "20.00", "payment_method": "stripe"},
        {"amount": "10.00", "payment_method": "stripe", "currency": "USD"},
    ):
        r = await api.client.post(url, json=other, headers=keyed(worker, "k"))
        assert r.status_code == 422, r.text
        assert r.json() == {"detail": "Idempotency-Key was already used with another request"}
        assert "idempotent-replayed" not in r.headers
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"amount": "10.00", "payment_method": "stripe"},
        headers=keyed(worker, "k"),
    )
    assert r.status_code == 422, r.text
    assert "already used" in r.json()["detail"]
    assert await count(runtime, WorkerPayout) == 1
    assert (await api.earnings(worker))["available_balance"] == "85.00"


async def test_simultaneous_requests_with_one_key_act_once(api: Api, runtime: Runtime) -> None:
    _, worker = await worker_with_balance(api)
    body = {"amount": "10.00", "payment_method": "stripe"}
    url = "/api/v1/payments/payouts/request"
    answers = await asyncio.gather(
        *(api.client.post(url, json=body, headers=keyed(worker, "burst")) for _ in range(6))
    )
    acted = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(acted) == 1, [(r.status_code, r.headers, r.text) for r in answers]
    for r in answers:
        if r is acted[0]:
            continue
        if r.status_code == 409:
            assert r.json() == {"detail": "A request with this Idempotency-Key is still running"}
        else:
            assert_replay(acted[0], r)
    assert await count(runtime, WorkerPayout) == 1
    assert (await api.earnings(worker))["available_balance"] == "85.00"


async def test_a_key_whose_first_request_still_runs_is_a_409(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker, "20.00")
    body = {"booking_id": booking["id"], "amount": "20.00", "currency": "USD"}
    body["payment_method"] = "pm_card_visa"
    url = "/api/v1/payments/stripe/payment-intent"
    # The provider answers slowly: the first request is still waiting for it.
    await simulator(runtime).inject_fault("create_hold", "delay", delay_seconds=1.0)
    first = asyncio.create_task(api.client.post(url, json=body, headers=keyed(client, "slow")))
    async with runtime.sessions() as session:
        for _ in range(200):
            if await session.scalar(select(IdempotencyRecord.id)):
                break
            await asyncio.sleep(0.01)
    r = await api.client.post(url, json=body, headers=keyed(client, "slow"))
    assert r.status_code == 409, r.text
    assert r.json() == {"detail": "A request with this Idempotency-Key is still running"}
    done = await first
    assert done.status_code == 201, done.text
    assert_replay(done, await api.client.post(url, json=body, headers=keyed(client, "slow")))
    assert await count(runtime, Payment) == 1


async def test_keys_belong_to_their_user(api: Api, runtime: Runtime) -> None:
    _, one = await worker_with_balance(api)
    url = "/api/v1/payments/payouts/request"
    ten = {"amount": "10.00", "payment_method": "stripe"}
    first = await api.client.post(url, json=ten, headers=keyed(one, "shared-key"))
    assert first.status_code == 201, first.text
    # The same key under other users, with the same body or another: neither a replay of
    # the first user's answer nor a conflict with it.
    for body in (ten, {"amount": "20.00", "payment_method": "stripe"}):
        _, other = await worker_with_balance(api)
        r = await api.client.post(url, json=body, headers=keyed(other, "shared-key"))
        assert r.status_code == 201, r.text
        assert "idempotent-replayed" not in r.headers
        assert r.json()["worker_id"] == other.id and r.json()["amount"] == body["amount"]
    assert_replay(first, await api.client.post(url, json=ten, headers=keyed(one, "shared-key")))
    assert await count(runtime, WorkerPayout) == 3


async def test_a_5xx_answer_is_not_kept_and_the_retry_acts(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker, "40.00")
    body = {"booking_id": booking["id"], "amount": "40.00", "currency": "USD"}
    body["payment_method"] = "pm_card_visa"
    url = "/api/v1/payments/stripe/payment-intent"
    await simulator(runtime).inject_fault("create_hold", "timeout")
    first = await api.client.post(url, json=body, headers=keyed(client, "retry-me"))
    assert first.status_code == 502, first.text
    assert await count(runtime, IdempotencyRecord) == 0
    again = await api.client.post(url, json=body, headers=keyed(client, "retry-me"))
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["status"] == "held"
    assert await count(runtime, Payment) == 1


async def test_an_unhandled_error_is_not_kept_either(
    runtime: Runtime, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handwork_payments.payouts import service

    _, worker = await worker_with_balance(api)
    real = service.request
    calls = 0

    async def broken_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await real(*args, **kwargs)

    monkeypatch.setattr(service, "request", broken_once)
    transport = httpx.ASGITransport(app=create_app(runtime), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        url = "/api/v1/payments/payouts/request"
        body = {"amount": "10.00", "payment_method": "stripe"}
        first = await http.post(url, json=body, headers=keyed(worker, "bug"))
        assert first.status_code == 500
        again = await http.post(url, json=body, headers=keyed(worker, "bug"))
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert await count(runtime, WorkerPayout) == 1


@pytest.mark.parametrize(
    ("key", "status"),
    [
        (b"", 422),
        (b"k" * (MAX_KEY_LENGTH + 1), 422),
        (b"k" * MAX_KEY_LENGTH, 201),
        ("clé-ü".encode(), 201),
    ],
    ids=["empty", "too long", "longest", "non-ascii"],
)
async def test_key_length(api: Api, runtime: Runtime, key: bytes, status: int) -> None:
    _, worker = await worker_with_balance(api)
    headers: dict[str, Any] = {**worker.headers, "Idempotency-Key": key}
    body = {"amount": "10.00", "payment_method": "stripe"}
    r = await api.client.post("/api/v1/payments/payouts/request", json=body, headers=headers)
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json() == {"detail": f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"}
        assert await count(runtime, IdempotencyRecord) == 0
    assert await count(runtime, WorkerPayout) == (1 if status == 201 else 0)
