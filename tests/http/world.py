"""The parties and objects the HTTP suites act on: the bad-input corpus's world (users of
every role; an unpaid booking, a held, a disputed and a released payment; a dispute under
review; a pending and a processing payout; a PayPal order; an unprocessed webhook delivery),
and what "nothing changed" means (`snapshot`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from handwork_payments.app import create_app
from handwork_payments.auth import tokens
from handwork_payments.ledger.repository import forget_accounts
from handwork_payments.ledger.verify import verify
from handwork_payments.models import ReviewObject, ReviewStatus, RiskLevel, RiskReview
from handwork_payments.providers import stripe_events
from handwork_payments.runtime import Runtime
from tests.conftest import TABLES, TEST_WEBHOOK_SECRET, empty_tables
from tests.helpers import Api, Party

UNKNOWN = 999_999


@dataclass
class World:
    http: httpx.AsyncClient
    runtime: Runtime
    parties: dict[str, Party]
    ids: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    last: dict[str, Any] | None = None  # the latest snapshot, when nothing changed since
    openapi: dict[str, Any] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        if who in self.parties:
            return dict(self.parties[who].headers)
        if who == "anonymous":
            return {}
        if who == "basic":
            return {"Authorization": "Basic Y2xpZW50OnNlY3JldA=="}
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def _paid(api: Api, client: Party, worker: Party, amount: str = "150.00") -> dict[str, Any]:
    booking = await api.booking(client, worker, amount)
    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201 and r.json()["status"] == "held", r.text
    payment: dict[str, Any] = r.json()
    return payment


async def _ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


async def build_world(http: httpx.AsyncClient, runtime: Runtime) -> World:
    api = Api(http, runtime)
    client, other_client = await api.user("client"), await api.user("client")
    worker, other_worker = await api.user("worker"), await api.user("worker")
    admin = await api.admin()
    world = World(
        http,
        runtime,
        {
            "client": client,
            "other_client": other_client,
            "worker": worker,
            "other_worker": other_worker,
            "admin": admin,
        },
    )
    ids = world.ids
    ids["worker_id"], ids["client_id"] = worker.id, client.id
    ids["client_email"], ids["client_email_upper"] = client.email, client.email.upper()

    # A booking waiting for its payment.
    ids["unpaid_booking"] = (await api.booking(client, worker))["id"]

    # A held card payment.
    held = await _paid(api, client, worker)
    ids["held"], ids["held_booking"] = held["id"], held["booking_id"]
    ids["intent"] = held["stripe_payment_id"]

    # A disputed payment whose dispute is under review.
    disputed = await _paid(api, client, worker)
    ids["disputed"] = disputed["id"]
    dispute = await _ok(
        await api.post(
            "/payments/disputes",
            client,
            {"payment_id": disputed["id"], "reason": "No show", "description": "Never came"},
        ),
        201,
    )
    ids["dispute"] = dispute["id"]
    await _ok(await api.post(f"/payments/disputes/{dispute['id']}/review", admin))

    # A released payment of a completed booking: the worker has 142.50 available.
    released = await _paid(api, client, worker)
    ids["released"], ids["completed_booking"] = released["id"], released["booking_id"]
    await _ok(await api.post(f"/bookings/{released['booking_id']}/complete", worker))
    await _ok(await api.post(f"/payments/{released['id']}/release", client))

    # Payouts: one pending, one being processed (no worker runs, so it stays there).
    await _ok(
        await http.put(
            "/api/v1/payments/payout-methods",
            json={"stripe_account_id": "acct_1Worker"},
            headers=worker.headers,
        )
    )
    request = {"amount": "10.00", "payment_method": "stripe"}
    ids["payout"] = (await _ok(await api.post("/payments/payouts/request", worker, request), 201))[
        "id"
    ]
    processing = await _ok(await api.post("/payments/payouts/request", worker, request), 201)
    ids["processing_payout"] = processing["id"]
    await _ok(await api.post(f"/payments/payouts/{processing['id']}/process", admin))
    # Two payouts waiting for a risk review: one to approve, one to reject.
    for name in ("review", "review_to_reject"):
        reviewed = await _ok(await api.post("/payments/payouts/request", worker, request), 201)
        async with runtime.sessions.begin() as session:
            review = RiskReview(
                object_type=ReviewObject.PAYOUT,
                object_id=reviewed["id"],
                status=ReviewStatus.OPEN,
                risk_level=RiskLevel.ELEVATED,
                reasons=["first_payout: the worker's first payout"],
            )
            session.add(review)
            await session.flush()
            ids[name] = review.id

    # A PayPal order the payer has not approved: the payment is pending.
    paypal_booking = await api.booking(client, worker)
    order = await _ok(
        await api.post(
            "/payments/paypal/create",
            client,
            {
                "booking_id": paypal_booking["id"],
                "amount": "150.00",
                "currency": "USD",
                "return_url": "https://app.example.com/ok",
                "cancel_url": "https://app.example.com/cancel",
            },
        ),
        201,
    )
    ids["pending"], ids["paypal_booking"] = order["id"], paypal_booking["id"]
    ids["order"] = order["paypal_payment_id"]

    # A webhook delivery received but not processed yet (no worker runs).
    body = json.dumps(
        {
            "id": "evt_validation_world",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_nobody_knows"}},
        }
    ).encode()
    await _ok(
        await http.post(
            "/api/v1/payments/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": stripe_events.sign(body, TEST_WEBHOOK_SECRET)},
        )
    )
    deliveries = (await api.get("/admin/webhooks", admin))["items"]
    ids["delivery"] = deliveries[0]["id"]
    # The dispute's alert, open.
    ids["alert"] = (await api.get("/admin/alerts", admin))["items"][0]["id"]

    secret = runtime.jwt_secret
    world.tokens = {
        "expired": tokens.issue(client.id, secret, -5),
        "forged": tokens.issue(client.id, "another-secret-0123456789abcdefgh", 60),
        "ghost": tokens.issue(UNKNOWN, secret, 60),
        "garbage": "not-a-jwt",
    }
    return world


def bad_input_fixtures() -> tuple[Any, Any]:
    """The module fixtures of a bad-input suite: `world`, built once for the module and
    its ledger verified after the last case, and a `clean_database` that overrides
    conftest's. Assign both at the top of the suite's module."""

    @pytest.fixture(scope="module", name="world")
    async def world(runtime: Runtime) -> AsyncIterator[World]:
        async with runtime.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        forget_accounts()  # the ledger's cached account ids name rows that are gone
        app = create_app(runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as http:
            built = await build_world(http, runtime)
            built.openapi = app.openapi()
            yield built
        async with runtime.sessions() as session:
            problems = await verify(session)
        assert problems == [], "ledger invariants broken:\n" + "\n".join(problems)

    @pytest.fixture(autouse=True, name="clean_database")
    def clean_database() -> None:
        """Overrides conftest's, which empties every table before each test and verifies the
        ledger after it: here the cases share one world, and each proves that it changed
        nothing at all, so the ledger's invariants are verified once, after the last."""

    return world, clean_database


# --- what "nothing changed" means -----------------------------------------------------------

# Every model's table and procrastinate's, but the rate-limit counters: counting attempts,
# bad ones included, is what they are for.
_ALL_TABLES = [t for t in TABLES.split(", ") if t != "rate_limit_counters"]
# Audit entries of refused logins and tokens record bad attempts by design; any other
# audit entry is a change.
_ROWS = {"audit_log": "(SELECT * FROM audit_log WHERE action NOT LIKE 'auth.%')"}
_SNAPSHOT_SQL = " UNION ALL ".join(
    f"SELECT '{name}', count(*), "
    f"md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {_ROWS.get(name, name)} x"
    for name in _ALL_TABLES
)


async def snapshot(runtime: Runtime) -> dict[str, Any]:
    """Every table's row count and a digest of its rows, and every ledger balance."""
    async with runtime.engine.connect() as conn:
        tables = {
            name: (count, digest)
            for name, count, digest in (await conn.execute(text(_SNAPSHOT_SQL))).all()
        }
        rows = (await conn.execute(text("SELECT code, balance FROM ledger_accounts"))).all()
    balances = {code: balance for code, balance in rows}
    return {"tables": tables, "balances": balances}


@asynccontextmanager
async def seeded(runtime: Runtime) -> AsyncIterator[World]:
    """Empty tables, an app on the test's runtime, and the world built through its API."""
    await empty_tables(runtime)
    app = create_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        world = await build_world(http, runtime)
        world.openapi = app.openapi()
        yield world
