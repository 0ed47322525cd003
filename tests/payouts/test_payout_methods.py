"""A Stripe account is one worker's (issue 9, Medium 5): PUT /payments/payout-methods
accepted any `acct_...`, so a second worker could name the first one's account and be
enabled by its `account.updated`. Now an account is taken once (409), and with live
Stripe only the account our onboarding created is accepted."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest
from alembic import command
from sqlalchemy import select

from handwork_payments import migrate
from handwork_payments.models import User
from handwork_payments.runtime import Runtime
from tests.database import fresh_database
from tests.helpers import Api, Party

URL = "/api/v1/payments/payout-methods"
TAKEN = {"detail": "This Stripe account is already another worker's payout method"}


async def put(api: Api, worker: Party, account: str) -> httpx.Response:
    return await api.client.put(URL, json={"stripe_account_id": account}, headers=worker.headers)


async def accounts(runtime: Runtime) -> dict[int, str | None]:
    async with runtime.sessions() as session:
        rows = await session.execute(select(User.id, User.stripe_account_id).order_by(User.id))
        return {user_id: account for user_id, account in rows}


async def test_an_account_named_by_a_worker_is_refused_to_another(
    api: Api, runtime: Runtime
) -> None:
    ann, bob = await api.user("worker"), await api.user("worker")
    assert (await put(api, ann, "acct_1Ann")).status_code == 200
    r = await put(api, bob, "acct_1Ann")
    assert r.status_code == 409, r.text
    assert r.json() == TAKEN
    # Naming it again is no change; after Ann moves to another account it is free.
    assert (await put(api, ann, "acct_1Ann")).status_code == 200
    assert (await put(api, ann, "acct_1Ann2")).status_code == 200
    assert (await put(api, bob, "acct_1Ann")).status_code == 200
    assert await accounts(runtime) == {ann.id: "acct_1Ann2", bob.id: "acct_1Ann"}


async def test_two_workers_naming_one_account_at_once_get_it_once(
    api: Api, runtime: Runtime
) -> None:
    workers = [await api.user("worker") for _ in range(4)]
    answers = await asyncio.gather(*(put(api, w, "acct_1Race") for w in workers))
    assert sorted(r.status_code for r in answers) == [200, 409, 409, 409]
    assert all(r.json() == TAKEN for r in answers if r.status_code == 409)
    assert list((await accounts(runtime)).values()).count("acct_1Race") == 1


async def test_with_live_stripe_only_the_onboarded_account_is_accepted(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    pro = await api.user("worker")
    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    onboarded = r.json()["account_id"]
    monkeypatch.setattr(runtime.providers.stripe, "live", True)
    r = await put(api, pro, "acct_1SomeoneElses")
    assert r.status_code == 400, r.text
    assert r.json() == {
        "detail": "With live Stripe a payout account comes from onboarding: "
        "POST /payments/stripe/connect/onboarding"
    }
    r = await api.client.put(
        URL,
        json={"stripe_account_id": onboarded, "paypal_email": "pro@example.com"},
        headers=pro.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["stripe_account_id"] == onboarded
    # A worker without onboarding has no account to name.
    other = await api.user("worker")
    assert (await put(api, other, onboarded)).status_code == 400
    assert await accounts(runtime) == {pro.id: onboarded, other.id: None}


def test_the_migration_clears_an_account_several_workers_named() -> None:
    """Before the unique index, several workers may name one account: none of them can be
    known to own it, so migration 0005 clears it from all of them (and their payouts
    flag); an account named once is kept. Downgrading and upgrading again works."""
    with fresh_database() as url:
        migrate.upgrade(url, "0004")
        with psycopg.connect(url, autocommit=True) as conn:
            for n, account in enumerate(("acct_1Shared", "acct_1Shared", "acct_1Own"), 1):
                conn.execute(
                    "INSERT INTO users (email, password_hash, full_name, role,"
                    " stripe_account_id, stripe_payouts_enabled)"
                    " VALUES (%s, 'x', 'W', 'worker', %s, true)",
                    (f"w{n}@example.com", account),
                )
        migrate.upgrade(url)
        command.downgrade(migrate.alembic_config(url), "0004")
        migrate.upgrade(url)
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT stripe_account_id, stripe_payouts_enabled FROM users ORDER BY id"
            ).fetchall()
            assert rows == [(None, False), (None, False), ("acct_1Own", True)]
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("UPDATE users SET stripe_account_id = 'acct_1Own'")
