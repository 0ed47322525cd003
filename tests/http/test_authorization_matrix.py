"""Who may call what: every route of the app by every kind of caller, with the status each
must get, kept as data below.

The parties: `anonymous` (no token), `bad_token` (a well-formed JWT signed with another
secret), `owner` (the party the route's objects belong to, or the role the route is for),
`other_client` and `other_worker` (users of those roles with no part in the objects), and
`admin`. The rules (../shared/API_CONTRACT.md): no or a bad token is a 401 wherever a
token is required; a role that may not do something is a 403; an object the caller may
not see is a 404, never a 403, so that its existence does not leak; the right party
succeeds. Routes authenticated otherwise than by a bearer token (the webhooks' signatures,
the simulator's buyer pages, login, registration, /health and the docs) answer every
caller alike: a token neither helps nor hurts there.

The table is checked against `app.routes`: a route added without a row, or a row left for
a route that is gone, fails `test_every_route_has_a_row`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import select, text

from handwork_payments.app import create_app
from handwork_payments.auth import tokens
from handwork_payments.ledger.verify import verify
from handwork_payments.models import PaymentDispute, WebhookDelivery
from handwork_payments.providers import stripe_events
from handwork_payments.providers.simulated import (
    PAYPAL_SIGNATURE_HEADER,
    paypal_simulator_signature,
)
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import PASSWORD, Api
from tests.http.world import World, seeded
from tests.recurring.flows import active_schedule

PARTIES = ("anonymous", "bad_token", "other_client", "other_worker", "admin", "owner")
_serial = itertools.count(1)

Body = Callable[[World, str], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    """One route: the party that owns its objects, the status per party, the request."""

    owner: str  # "client" | "worker" | "admin": which of the world's users is the owner
    expect: dict[str, int]
    path: dict[str, str] = field(default_factory=dict)  # path parameter -> world id name
    json: Body | None = None
    form: Body | None = None
    params: Body | None = None
    content: Callable[[World, str], tuple[bytes, dict[str, str]]] | None = None


def guarded(
    owner: str, ok: int, other_client: int, other_worker: int, admin: int, **kw: Any
) -> Row:
    """A route behind a bearer token."""
    expect = {
        "anonymous": 401,
        "bad_token": 401,
        "other_client": other_client,
        "other_worker": other_worker,
        "admin": admin,
        "owner": ok,
    }
    return Row(owner, expect, **kw)


def everyone(ok: int, **kw: Any) -> Row:
    """A route that authenticates otherwise (or not at all): one answer for all."""
    return Row("client", dict.fromkeys(PARTIES, ok), **kw)


def _new_user(world: World, who: str) -> dict[str, Any]:
    return {
        "email": f"matrix-{who}-{next(_serial)}@example.com",
        "password": PASSWORD,
        "full_name": "New User",
        "role": "client",
    }


def _stripe_event(world: World, who: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": f"evt_matrix_{who}_{next(_serial)}",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_nobody_knows"}},
        }
    ).encode()
    return body, {"Stripe-Signature": stripe_events.sign(body, TEST_WEBHOOK_SECRET)}


def _paypal_event(world: World, who: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": f"WH-MATRIX-{who}-{next(_serial)}",
            "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "resource": {"id": "NOBODYKNOWS"},
        }
    ).encode()
    return body, {PAYPAL_SIGNATURE_HEADER: paypal_simulator_signature(body)}


def _ids(**names: str) -> Body:
    return lambda w, _: {key: w.ids[name] for key, name in names.items()}


def _with(base: Body, **fixed: Any) -> Body:
    return lambda w, who: {**base(w, who), **fixed}


A = "/api/v1"
OK, CREATED = 200, 201
# fmt: off
MATRIX: dict[str, Row] = {
    # --- authenticated otherwise, or public ---------------------------------------------
    f"POST {A}/auth/register": everyone(CREATED, json=_new_user),
    f"POST {A}/auth/token": everyone(
        OK, form=lambda w, _: {"username": w.ids["client_email"], "password": PASSWORD}),
    f"POST {A}/payments/webhooks/stripe": everyone(OK, content=_stripe_event),
    f"POST {A}/payments/webhooks/paypal": everyone(OK, content=_paypal_event),
    f"GET {A}/simulator/stripe/payment_intents/{{intent_id}}": everyone(
        OK, path={"intent_id": "intent"}),
    # The intent is held already: the simulator refuses to confirm it again, to anyone.
    f"POST {A}/simulator/stripe/payment_intents/{{intent_id}}/confirm": everyone(
        409, path={"intent_id": "intent"}, json=lambda w, _: {"payment_method": "pm_card_visa"}),
    f"POST {A}/simulator/stripe/payment_intents/{{intent_id}}/authenticate": everyone(
        409, path={"intent_id": "intent"}, json=lambda w, _: {"succeed": True}),
    # The setup succeeded already: the simulator refuses to confirm it again, to anyone.
    f"POST {A}/simulator/stripe/setup_intents/{{setup_id}}/confirm": everyone(
        409, path={"setup_id": "setup"}, json=lambda w, _: {"payment_method": "pm_card_visa"}),
    # The bank's side: the world's intent is only authorised (nothing captured to dispute),
    # and no dispute has the made-up id.
    f"POST {A}/simulator/stripe/payment_intents/{{intent_id}}/dispute": everyone(
        409, path={"intent_id": "intent"}, json=lambda w, _: {"reason": "fraudulent"}),
    f"POST {A}/simulator/stripe/disputes/{{dispute_id}}/close": everyone(
        404, path={"dispute_id": "no_such_dispute"}, json=lambda w, _: {"outcome": "won"}),
    f"GET {A}/simulator/paypal/checkoutnow": everyone(
        OK, params=lambda w, _: {"token": w.ids["order"]}),
    # No such setup token: the same 404 for anyone (the page has no bearer token).
    f"GET {A}/simulator/paypal/agreements/approve": everyone(
        404, params=lambda w, _: {"approval_session_id": "5C991763VB2781612"}),
    "GET /health": everyone(OK),
    # Without METRICS_TOKEN (tests/http/test_metrics.py sets one).
    "GET /metrics": everyone(OK),
    "GET /openapi.json": everyone(OK),
    "GET /docs": everyone(OK),
    "GET /docs/start.js": everyone(OK),
    # Swagger UI's own files, served by the service (no CDN).
    "ANY /docs/assets/{path}": everyone(OK, path={"path": "docs_asset"}),
    # The dashboard's pages are shells: their data comes from the API, with its checks.
    "GET /dashboard": everyone(OK),
    "GET /dashboard/login": everyone(OK),
    "GET /dashboard/queues": everyone(OK),
    "GET /dashboard/payments": everyone(OK),
    "GET /dashboard/payments/{payment_id}": everyone(OK, path={"payment_id": "held"}),
    "GET /dashboard/users": everyone(OK),
    "GET /dashboard/me": everyone(OK),
    "ANY /dashboard/static/{path}": everyone(OK, path={"path": "dashboard_asset"}),
    # --- anyone with a token, each seeing its own ------------------------------------------
    f"GET {A}/auth/me": guarded("client", OK, OK, OK, OK),
    f"GET {A}/bookings": guarded("client", OK, OK, OK, OK),
    f"GET {A}/payments/": guarded("client", OK, OK, OK, OK),
    f"GET {A}/payments/disputes": guarded("client", OK, OK, OK, OK),
    f"GET {A}/payments/payouts": guarded("worker", OK, OK, OK, OK),
    f"GET {A}/payments/transactions": guarded("worker", OK, OK, OK, OK),
    # --- one object: its parties and admins see it, strangers get a 404 -------------------
    f"GET {A}/bookings/{{booking_id}}": guarded(
        "client", OK, 404, 404, OK, path={"booking_id": "held_booking"}),
    f"GET {A}/payments/{{payment_id}}": guarded(
        "client", OK, 404, 404, OK, path={"payment_id": "held"}),
    # --- clients' actions ------------------------------------------------------------------
    f"POST {A}/bookings": guarded(
        "client", CREATED, CREATED, 403, 403,
        json=lambda w, _: {"worker_id": w.ids["worker_id"], "title": "Matrix", "amount": "10.00"}),
    f"POST {A}/bookings/{{booking_id}}/cancel": guarded(
        "client", OK, 404, 404, 403, path={"booking_id": "cancel_booking"}),
    f"POST {A}/payments/stripe/payment-intent": guarded(
        "client", CREATED, 404, 403, 403,
        json=_with(_ids(booking_id="unpaid_booking"), amount="150.00", currency="USD",
                   payment_method="pm_card_visa")),
    f"POST {A}/payments/stripe/confirm": guarded(
        "client", OK, 404, 403, 403,
        json=_ids(payment_intent_id="intent", booking_id="held_booking")),
    f"POST {A}/payments/paypal/create": guarded(
        "client", CREATED, 404, 403, 403,
        json=_with(_ids(booking_id="paypal_unpaid"), amount="150.00", currency="USD",
                   return_url="https://app.example.com/ok",
                   cancel_url="https://app.example.com/cancel")),
    f"POST {A}/payments/paypal/execute": guarded(
        "client", OK, 404, 403, 403,
        json=_ids(payment_id="approved_order", booking_id="approved_booking",
                  payer_id="payer")),
    f"POST {A}/payments/{{payment_id}}/release": guarded(
        "client", OK, 404, 404, 403, path={"payment_id": "release_me"}),
    f"GET {A}/payments/summary/client": guarded("client", OK, OK, 403, 403),
    # --- recurring schedules: their client's (admins may change them too) ------------------
    f"GET {A}/recurring-schedules": guarded("client", OK, OK, OK, OK),
    f"POST {A}/recurring-schedules": guarded(
        "client", CREATED, CREATED, 403, 403,
        json=lambda w, _: {"worker_id": w.ids["worker_id"], "title": "Matrix", "amount": "10.00",
                           "interval": "weekly", "starts_at": "2030-01-01T09:00:00Z",
                           "payment_method": "stripe"}),
    f"GET {A}/recurring-schedules/{{schedule_id}}": guarded(
        "client", OK, 404, 404, OK, path={"schedule_id": "schedule"}),
    f"POST {A}/recurring-schedules/{{schedule_id}}/pause": guarded(
        "client", OK, 404, 404, OK, path={"schedule_id": "pause_me"}),
    f"POST {A}/recurring-schedules/{{schedule_id}}/resume": guarded(
        "client", OK, 404, 404, OK, path={"schedule_id": "resume_me"}),
    f"POST {A}/recurring-schedules/{{schedule_id}}/cancel": guarded(
        "client", OK, 404, 404, OK, path={"schedule_id": "cancel_me"}),
    # --- either side of the booking --------------------------------------------------------
    f"POST {A}/payments/disputes": guarded(
        "client", CREATED, 404, 404, 403,
        json=_with(_ids(payment_id="dispute_me"), reason="Matrix", description="Who may")),
    # --- workers' actions ------------------------------------------------------------------
    f"POST {A}/bookings/{{booking_id}}/complete": guarded(
        "worker", OK, 404, 404, 403, path={"booking_id": "held_booking"}),
    f"POST {A}/payments/refund": guarded(
        "worker", OK, 404, 404, OK,
        json=_with(_ids(payment_id="held"), amount="1.00", reason="Matrix")),
    f"PUT {A}/payments/payout-methods": guarded(
        "worker", OK, 403, OK, 403, json=lambda w, _: {"paypal_email": "matrix@example.com"}),
    # The other worker has neither a balance nor a payout method: past the role check, a
    # rule of the domain (400).
    f"POST {A}/payments/payouts/request": guarded(
        "worker", CREATED, 403, 400, 403,
        json=lambda w, _: {"amount": "1.00", "payment_method": "stripe"}),
    # The owner named an account by hand (acct_1Worker) that Stripe (the simulator) does not
    # know: Stripe's refusal, a 400; the other worker, with none, gets its own and a link.
    f"POST {A}/payments/stripe/connect/onboarding": guarded("worker", 400, 403, OK, 403),
    f"GET {A}/payments/earnings/worker": guarded("worker", OK, 403, OK, 403),
    f"GET {A}/payments/balances": guarded("worker", OK, 403, OK, 403),
    # --- admins' actions (the owner is the admin: every other party is refused by role) ----
    f"POST {A}/payments/disputes/{{dispute_id}}/review": guarded(
        "admin", OK, 403, 403, OK, path={"dispute_id": "open_dispute"}),
    f"POST {A}/payments/disputes/{{dispute_id}}/resolve": guarded(
        "admin", OK, 403, 403, OK, path={"dispute_id": "dispute"},
        json=lambda w, _: {"outcome": "split", "refund_amount": "1.00",
                           "resolution_notes": "Matrix"}),
    f"POST {A}/payments/payouts/{{payout_id}}/process": guarded(
        "admin", OK, 403, 403, OK, path={"payout_id": "payout"}),
    # Processing an already processing payout is refused per id, in the body: both 200.
    f"POST {A}/payments/payouts/process": guarded(
        "admin", OK, 403, 403, OK, json=lambda w, _: {"ids": [w.ids["processing_payout"]]}),
    f"POST {A}/payments/payouts/{{payout_id}}/hold": guarded(
        "admin", OK, 403, 403, OK, path={"payout_id": "hold_me"},
        json=lambda w, _: {"reason": "Matrix"}),
    f"POST {A}/payments/payouts/{{payout_id}}/release-hold": guarded(
        "admin", OK, 403, 403, OK, path={"payout_id": "held_payout"}),
    f"POST {A}/payments/payouts/{{payout_id}}/reject": guarded(
        "admin", OK, 403, 403, OK, path={"payout_id": "reject_me"},
        json=lambda w, _: {"reason": "Matrix"}),
    f"GET {A}/admin/webhooks": guarded("admin", OK, 403, 403, OK),
    f"POST {A}/admin/webhooks/{{delivery_id}}/replay": guarded(
        "admin", OK, 403, 403, OK, path={"delivery_id": "delivery"}),
    f"GET {A}/admin/alerts": guarded("admin", OK, 403, 403, OK),
    f"GET {A}/admin/audit": guarded("admin", OK, 403, 403, OK),
    f"GET {A}/admin/users": guarded("admin", OK, 403, 403, OK),
    # Users of their own, with no money: suspending, reactivating or erasing them spoils
    # no other row (a second call finds them so already: the same answer).
    f"POST {A}/admin/users/{{user_id}}/suspend": guarded(
        "admin", OK, 403, 403, OK, path={"user_id": "suspend_me"},
        json=lambda w, _: {"reason": "Matrix"}),
    f"POST {A}/admin/users/{{user_id}}/reactivate": guarded(
        "admin", OK, 403, 403, OK, path={"user_id": "suspend_me"}),
    f"POST {A}/admin/users/{{user_id}}/erase": guarded(
        "admin", OK, 403, 403, OK, path={"user_id": "erase_me"}),
    f"GET {A}/auth/me/export": guarded("client", OK, OK, OK, OK),
    f"GET {A}/admin/events": guarded("admin", OK, 403, 403, OK),
    f"GET {A}/admin/payments/{{payment_id}}/story": guarded(
        "admin", OK, 403, 403, OK, path={"payment_id": "held"}),
    f"POST {A}/admin/events/{{event_id}}/redeliver": guarded(
        "admin", OK, 403, 403, OK, path={"event_id": "event"}),
    # The world's worker owes nothing: the admin is let through and refused by state.
    f"POST {A}/admin/users/{{user_id}}/write-off": guarded(
        "admin", 409, 403, 403, 409, path={"user_id": "worker_id"},
        json=lambda w, _: {"reason": "Matrix"}),
    f"POST {A}/admin/alerts/{{alert_id}}/acknowledge": guarded(
        "admin", OK, 403, 403, OK, path={"alert_id": "alert"}),
    f"GET {A}/admin/analytics": guarded("admin", OK, 403, 403, OK),
    f"POST {A}/admin/stripe/payment-method-domains": guarded(
        "admin", CREATED, 403, 403, CREATED,
        json=lambda w, who: {"domain": f"matrix-{who}.example.com"}),
    f"GET {A}/admin/stripe/payment-method-domains": guarded("admin", OK, 403, 403, OK),
    f"GET {A}/admin/reviews": guarded("admin", OK, 403, 403, OK),
    f"POST {A}/admin/reviews/{{review_id}}/approve": guarded(
        "admin", OK, 403, 403, OK, path={"review_id": "review"}),
    f"POST {A}/admin/reviews/{{review_id}}/reject": guarded(
        "admin", OK, 403, 403, OK, path={"review_id": "review_to_reject"},
        json=lambda w, _: {"reason": "Matrix"}),
    f"GET {A}/admin/chargebacks/{{dispute_id}}/evidence": guarded(
        "admin", OK, 403, 403, OK, path={"dispute_id": "chargeback"}),
    f"POST {A}/admin/chargebacks/{{dispute_id}}/evidence": guarded(
        "admin", OK, 403, 403, OK, path={"dispute_id": "chargeback"},
        json=lambda w, _: {"text": "Matrix"}),
}
# fmt: on
# Admin-only rows: the admin acts twice (as `admin` and as `owner`); the second time the
# object's state may refuse (409), which still proves the admin was let through.
AGAIN = {
    f"POST {A}/payments/disputes/{{dispute_id}}/review": 409,
    f"POST {A}/payments/disputes/{{dispute_id}}/resolve": 409,
    f"POST {A}/payments/payouts/{{payout_id}}/process": 409,
    f"POST {A}/payments/payouts/{{payout_id}}/hold": 409,
    f"POST {A}/payments/payouts/{{payout_id}}/release-hold": 409,
    f"POST {A}/payments/payouts/{{payout_id}}/reject": 409,
    # The admin (before the client) paused, resumed or cancelled the schedule already.
    f"POST {A}/recurring-schedules/{{schedule_id}}/pause": 409,
    f"POST {A}/recurring-schedules/{{schedule_id}}/resume": 409,
    f"POST {A}/recurring-schedules/{{schedule_id}}/cancel": 409,
    f"POST {A}/admin/reviews/{{review_id}}/approve": 409,
    f"POST {A}/admin/reviews/{{review_id}}/reject": 409,
    f"POST {A}/admin/chargebacks/{{dispute_id}}/evidence": 409,
}


def route_keys(app: Any) -> set[str]:
    """'METHOD /path' of every route, included routers flattened as FastAPI's own OpenAPI
    generator does; a mount (no methods) as 'ANY /path'."""
    keys = set()
    for route in iter_route_contexts(app.routes):
        # HEAD is served for every GET by Starlette itself.
        methods = route.methods - {"HEAD"} if route.methods else {"ANY"}
        # The path as OpenAPI shows it: `{payment_id}`, not the route's `{payment_id:int}`.
        keys |= {f"{m} {route.path_format}" for m in methods}
    return keys


async def test_every_route_has_a_row(runtime: Runtime) -> None:
    routes = route_keys(create_app(runtime))
    assert sorted(routes - set(MATRIX)) == [], "routes without a row in MATRIX"
    assert sorted(set(MATRIX) - routes) == [], "rows in MATRIX for routes that are gone"


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """Overrides conftest's: the rows share one world (refusals change nothing, and each
    success acts on objects of its own), and the ledger is verified once, at the end."""


@pytest.fixture(scope="module")
async def world(runtime: Runtime) -> AsyncIterator[World]:
    async with seeded(runtime) as built:
        await prepare(built)
        yield built
    async with runtime.sessions() as session:
        problems = await verify(session)
    assert problems == [], "ledger invariants broken:\n" + "\n".join(problems)


async def prepare(world: World) -> None:
    """Objects of their own for the successes that change them, so that no row's success
    spoils another's; and a delivery processed once (only those may be replayed)."""
    api = Api(world.http, world.runtime)
    client, worker = world.parties["client"], world.parties["worker"]
    world.ids["docs_asset"] = "swagger-ui.css"
    for name in ("suspend_me", "erase_me"):
        world.ids[name] = (await api.user("client")).id
    world.ids["dashboard_asset"] = "dashboard.css"
    # Pending payouts of their own for the admin's payout controls; one held already.
    for name in ("hold_me", "held_payout", "reject_me"):
        r = await api.post(
            "/payments/payouts/request", worker, {"amount": "1.00", "payment_method": "stripe"}
        )
        assert r.status_code == 201, r.text
        world.ids[name] = r.json()["id"]
    r = await api.post(
        f"/payments/payouts/{world.ids['held_payout']}/hold",
        world.parties["admin"],
        {"reason": "Matrix"},
    )
    assert r.status_code == 200, r.text
    async with world.runtime.sessions() as session:
        world.ids["event"] = (
            await session.execute(text("SELECT min(id) FROM marketplace_events"))
        ).scalar_one()
    for name in ("cancel_booking", "paypal_unpaid"):
        world.ids[name] = (await api.booking(client, worker))["id"]
    for name in ("schedule", "pause_me", "resume_me", "cancel_me"):
        schedule = await active_schedule(
            api, client, worker, starts_at=datetime(2030, 1, 1, tzinfo=UTC)
        )
        world.ids[name] = schedule["id"]
    world.ids["setup"] = schedule["setup"]["setup_intent_id"]
    r = await api.post(f"/recurring-schedules/{world.ids['resume_me']}/pause", client)
    assert r.status_code == 200, r.text
    for name in ("release_me", "dispute_me", "review_me"):
        booking = await api.booking(client, worker)
        r = await api.stripe_payment(client, booking)
        assert r.status_code == 201 and r.json()["status"] == "held", r.text
        world.ids[name] = r.json()["id"]
    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": world.ids["review_me"], "reason": "Late", "description": "Waiting"},
    )
    assert r.status_code == 201, r.text
    world.ids["open_dispute"] = r.json()["id"]
    world.ids["chargeback"] = await chargeback(api, client, worker)
    world.ids["no_such_dispute"] = "du_nobody_knows"
    # A PayPal order its payer approved, for the client to execute.
    booking = await api.booking(client, worker)
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": booking["amount"],
            "currency": "USD",
            "return_url": "https://app.example.com/ok",
            "cancel_url": "https://app.example.com/cancel",
        },
    )
    assert r.status_code == 201, r.text
    order = r.json()["paypal_payment_id"]
    r = await world.http.get(f"{A}/simulator/paypal/checkoutnow", params={"token": order})
    assert r.status_code == 200, r.text
    world.ids |= {"approved_order": order, "approved_booking": booking["id"]}
    world.ids["payer"] = r.json()["payer_id"]
    async with world.runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE webhook_deliveries SET status = 'failed', attempts = 1 WHERE id = :id"),
            {"id": world.ids["delivery"]},
        )


async def chargeback(api: Api, client: Any, worker: Any) -> int:
    """A released payment the client's bank disputes (the simulator's charge.dispute.created
    processed as the worker would): our dispute's id."""
    booking = await api.booking(client, worker)
    r = await api.stripe_payment(client, booking)
    payment = r.json()
    await api.post(f"/bookings/{booking['id']}/complete", worker)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    intent = payment["stripe_payment_id"]
    r = await api.client.post(f"{A}/simulator/stripe/payment_intents/{intent}/dispute", json={})
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session:
        delivery_id = await session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.event_type == "charge.dispute.created")
        )
        assert delivery_id is not None
    await webhooks.process(api.runtime, delivery_id)
    async with api.runtime.sessions() as session:
        found = await session.scalar(
            select(PaymentDispute.id).where(PaymentDispute.payment_id == payment["id"])
        )
    assert found is not None
    return found


def headers_of(world: World, row: Row, party: str) -> dict[str, str]:
    if party == "anonymous":
        return {}
    if party == "bad_token":
        forged = tokens.issue(world.parties["client"].id, "another-secret-0123456789abcdefgh", 60)
        return {"Authorization": f"Bearer {forged}"}
    who = row.owner if party == "owner" else party
    return dict(world.parties[who].headers)


async def call(world: World, key: str, row: Row, party: str) -> httpx.Response:
    method, template = key.split(" ", 1)
    method = "GET" if method == "ANY" else method  # a mount: what a browser asks of it
    url = template.format(**{name: world.ids[ref] for name, ref in row.path.items()})
    headers = headers_of(world, row, party)
    kwargs: dict[str, Any] = {}
    if row.json is not None:
        kwargs["json"] = row.json(world, party)
    if row.form is not None:
        kwargs["data"] = row.form(world, party)
    if row.params is not None:
        kwargs["params"] = row.params(world, party)
    if row.content is not None:
        kwargs["content"], extra = row.content(world, party)
        headers |= extra | {"content-type": "application/json"}
    return await world.http.request(method, url, headers=headers, **kwargs)


@pytest.mark.parametrize("key", sorted(MATRIX))
async def test_route(key: str, world: World) -> None:
    row = MATRIX[key]
    got: dict[str, int] = {}
    for party in PARTIES:  # the owner last: its success may change the objects
        r = await call(world, key, row, party)
        got[party] = r.status_code
        if r.status_code >= 400 and r.headers.get("content-type", "").startswith(
            "application/json"
        ):
            assert isinstance(r.json().get("detail"), str), (party, r.text)
    expect = dict(row.expect)
    if key in AGAIN:
        expect["owner"] = AGAIN[key]
    assert got == expect


async def test_a_route_added_without_a_row_is_caught(runtime: Runtime) -> None:
    app = create_app(runtime)

    @app.get("/api/v1/added-later")
    async def added_later() -> dict[str, str]:
        return {}

    assert route_keys(app) - set(MATRIX) == {"GET /api/v1/added-later"}
