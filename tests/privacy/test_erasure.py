"""Erasure: the person is gone from the database (a pg_dump shows neither email nor
name), every amount stays, `ledger verify` and `audit verify` still pass; refused while
money is in motion."""

from __future__ import annotations

import json
import subprocess

from sqlalchemy import text

from handwork_payments.audit import chain
from handwork_payments.db import libpq_url
from handwork_payments.ledger.verify import verify
from handwork_payments.models import Payment, WorkerPayout
from handwork_payments.payouts import service as payouts
from handwork_payments.runtime import Runtime
from tests.helpers import PASSWORD, Api, Party

EMAIL = "zebulon.quackenbush@example.org"
NAME = "Zebulon Quackenbush"
PAYPAL_EMAIL = "zeb-paypal@example.org"


async def _person(api: Api) -> Party:
    r = await api.client.post(
        "/api/v1/auth/register",
        json={"email": EMAIL, "password": PASSWORD, "full_name": NAME, "role": "worker"},
    )
    assert r.status_code == 201, r.text
    return Party(r.json()["id"], EMAIL, await api.login(EMAIL))


async def _earned(api: Api, worker: Party, amount: str = "150.00") -> dict[str, object]:
    client = await api.user("client")
    booking = await api.booking(client, worker, amount)
    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201, r.text
    r = await api.post(f"/payments/{r.json()['id']}/release", client)
    assert r.status_code == 200, r.text
    payment: dict[str, object] = r.json()
    return payment


def _dump(database_url: str) -> str:
    return subprocess.run(
        ["pg_dump", "--data-only", libpq_url(database_url)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


async def test_erasure_removes_the_person_and_keeps_the_books(
    api: Api, runtime: Runtime, database_url: str
) -> None:
    admin = await api.admin()
    worker = await _person(api)
    payment = await _earned(api, worker)
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"paypal_email": PAYPAL_EMAIL},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/payments/payouts/request", worker, {"amount": "142.50", "payment_method": "paypal"}
    )
    assert r.status_code == 201, r.text
    payout_id = r.json()["id"]
    assert (await api.post(f"/payments/payouts/{payout_id}/process", admin)).status_code == 200
    assert await payouts.send_batch(runtime, "paypal") == [payout_id]
    # A provider's delivery naming the person, as PayPal's payout webhooks do.
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO webhook_deliveries (provider, event_id, event_type, status, "
                "attempts, headers, body, signature_valid) VALUES ('paypal', 'WH-ERASE', "
                "'PAYMENT.PAYOUTS-ITEM.SUCCEEDED', 'processed', 1, '{}', :body, true)"
            ),
            {"body": json.dumps({"resource": {"receiver": PAYPAL_EMAIL, "name": NAME}})},
        )
    await api.client.post("/api/v1/auth/token", data={"username": EMAIL, "password": "wrong!!!"})
    dump = _dump(database_url).lower()
    assert EMAIL in dump and NAME.lower() in dump and PAYPAL_EMAIL in dump

    r = await api.post(f"/admin/users/{worker.id}/erase", admin)
    assert r.status_code == 200, r.text
    assert r.json() | {"created_at": None} == {
        "id": worker.id,
        "email": f"erased-{worker.id}@invalid",
        "full_name": "Erased user",
        "role": "worker",
        "status": "erased",
        "created_at": None,
    }

    dump = _dump(database_url).lower()
    for value in (EMAIL, NAME.lower(), PAYPAL_EMAIL, "zebulon", "quackenbush"):
        assert value not in dump, value
    # The books are whole: amounts, the ledger, the audit chain.
    async with runtime.sessions() as session:
        assert await verify(session) == []
        kept = await session.get(Payment, payment["id"])
        sent = await session.get(WorkerPayout, payout_id)
        assert kept is not None and (kept.amount, kept.worker_amount) == (15000, 14250)
        assert sent is not None and sent.amount == 14250 and sent.destination.startswith("erased:")
    await chain.seal(runtime.sessions)
    async with runtime.sessions() as session:
        verdict = await chain.verify(session)
    assert verdict.problems == [] and verdict.sealed > 5
    # Gone for good: neither its token nor its password opens anything.
    assert (await api.client.get("/api/v1/auth/me", headers=worker.headers)).status_code == 401
    r = await api.client.post("/api/v1/auth/token", data={"username": EMAIL, "password": PASSWORD})
    assert r.status_code == 401
    r = await api.post(f"/admin/users/{worker.id}/reactivate", admin)
    assert r.status_code == 409


async def test_erasure_is_refused_while_money_moves(api: Api, runtime: Runtime) -> None:
    admin = await api.admin()

    async def refused(user_id: int) -> str:
        r = await api.post(f"/admin/users/{user_id}/erase", admin)
        assert r.status_code == 409, r.text
        detail: str = r.json()["detail"]
        return detail.split(":")[0]

    client, worker, payment = await api.held_payment()
    assert (
        await refused(client.id)
        == "The user has money in escrow (a payment pending, held or disputed)"
    )
    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": payment["id"], "reason": "Late", "description": "No show"},
    )
    assert r.status_code == 201, r.text
    assert await refused(worker.id) == "The user has an open dispute"

    earner = await api.user("worker")
    await _earned(api, earner, "10.00")
    assert await refused(earner.id) == "The user has a non-zero available balance"
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"paypal_email": "earner@example.com"},
        headers=earner.headers,
    )
    r = await api.post(
        "/payments/payouts/request", earner, {"amount": "9.50", "payment_method": "paypal"}
    )
    assert r.status_code == 201, r.text
    assert await refused(earner.id) == "The user has a payout pending or processing"
    async with runtime.sessions() as session:
        statuses = (await session.scalars(text("SELECT DISTINCT status FROM users"))).all()
    assert statuses == ["active"]
