"""Bad input answers a clear 4xx with `{"detail": "..."}`, never a 500, and changes nothing.

One world (users of every role; bookings and payments in the states the cases need; a
dispute, payouts, a webhook delivery) is built once for the module. Each case snapshots
every table (row count and a digest of all its rows) and the ledger balances, sends one
bad request, checks the exact status and the error's shape, and snapshots again: the two
must be equal, and the status must be one the OpenAPI document declares for the
operation. Since no case may change anything, the cases share the world rather than empty
the database between them (this module overrides conftest's `clean_database`), and the
ledger's invariants, which nothing could have broken, are verified once, at the end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from handwork_payments.app import create_app
from handwork_payments.auth import tokens
from handwork_payments.ledger.repository import forget_accounts
from handwork_payments.ledger.verify import verify
from handwork_payments.providers import stripe_events
from handwork_payments.providers.simulated import (
    PAYPAL_SIGNATURE_HEADER,
    paypal_simulator_signature,
)
from handwork_payments.runtime import Runtime
from tests.conftest import TABLES, TEST_WEBHOOK_SECRET
from tests.helpers import PASSWORD, Api, Party

# --- the world ---------------------------------------------------------------------------

UNKNOWN = 999_999
BEYOND_BIGINT = 2**63


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

    secret = runtime.jwt_secret
    world.tokens = {
        "expired": tokens.issue(client.id, secret, -5),
        "forged": tokens.issue(client.id, "another-secret-0123456789abcdefgh", 60),
        "ghost": tokens.issue(UNKNOWN, secret, 60),
        "garbage": "not-a-jwt",
    }
    return world


@pytest.fixture(scope="module")
async def world(runtime: Runtime) -> AsyncIterator[World]:
    async with runtime.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    forget_accounts()
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


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """Overrides conftest's, which empties every table before each test and verifies the
    ledger after it: here the cases share one world, and each proves that it changed
    nothing at all, so the ledger's invariants are verified once, after the last."""


# --- what "nothing changed" means -----------------------------------------------------------

# Every model's table and procrastinate's, but the rate-limit counters: counting attempts,
# bad ones included, is what they are for.
_ALL_TABLES = [t for t in TABLES.split(", ") if t != "rate_limit_counters"]
_SNAPSHOT_SQL = " UNION ALL ".join(
    f"SELECT '{name}', count(*), "
    f"md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {name} x"
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


def assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, f"{r.status_code} != {status}: {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body


def declared(doc: dict[str, Any], method: str, url: str, status: int) -> bool:
    """Whether the OpenAPI document lists `status` among the answers of the operation
    that serves `url`."""
    for pattern, operations in _templates(id(doc), doc):
        operation = operations.get(method.lower())
        if operation is not None and pattern.fullmatch(url):
            return str(status) in operation["responses"]
    return False


_TEMPLATES: dict[int, list[tuple[re.Pattern[str], dict[str, Any]]]] = {}


def _templates(key: int, doc: dict[str, Any]) -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    if key not in _TEMPLATES:
        _TEMPLATES[key] = [
            (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))), operations)
            for path, operations in doc["paths"].items()
        ]
    return _TEMPLATES[key]


# --- cases ---------------------------------------------------------------------------------


class Ref:
    """A world id inside a case's body, query or form, filled in when the case runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


class _Refs:
    def __getattr__(self, name: str) -> Ref:
        return Ref(name)


REF = _Refs()
NO_BODY: Any = object()
_RAW_REF = re.compile(rb'"@ref:(\w+)"')


def resolve(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, Ref):
        return ids[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids) for v in value]
    return value


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # under /api/v1; `{name}` is a world id
    who: str
    status: int
    json: Any = NO_BODY
    content: bytes | None = None  # raw; `"@ref:name"` is a world id
    content_type: str = "application/json"
    form: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    # FastAPI's own answers (unparsable body, unknown route or method): in no operation.
    undeclared: bool = False


def case(id: str, route: str, who: str, status: int, **kw: Any) -> Any:
    method, path = route.split(" ", 1)
    return pytest.param(Case(method, path, who, status, **kw), id=id)


async def send(world: World, c: Case) -> httpx.Response:
    headers = world.headers(c.who) | (c.headers or {})
    kwargs: dict[str, Any] = {}
    if c.content is not None:
        kwargs["content"] = _RAW_REF.sub(
            lambda m: json.dumps(world.ids[m[1].decode()]).encode(), c.content
        )
        headers["content-type"] = c.content_type
    elif c.form is not None:
        kwargs["data"] = resolve(c.form, world.ids)
    elif c.json is not NO_BODY:
        kwargs["json"] = resolve(c.json, world.ids)
    if c.params is not None:
        kwargs["params"] = resolve(c.params, world.ids)
    url = "/api/v1" + c.path.format(**world.ids)
    return await world.http.request(c.method, url, headers=headers, **kwargs)


async def check(world: World, c: Case) -> None:
    # The snapshot after one case is the one before the next: only these cases, one at a
    # time, touch the world's database (no background worker runs).
    before, world.last = world.last or await snapshot(world.runtime), None
    r = await send(world, c)
    assert_error(r, c.status)
    if not c.undeclared:
        assert declared(world.openapi, c.method, r.request.url.path, c.status), (
            f"{c.status} is not among the responses OpenAPI declares for {c.method} {c.path}"
        )
    after = await snapshot(world.runtime)
    assert after == before, f"{c.method} {c.path} changed the database"
    world.last = after


@dataclass(frozen=True)
class BodyEndpoint:
    """An endpoint that takes a body, as the right party with a body that passes
    validation; `optional` fields may be left out, every other one is required."""

    route: str
    who: str
    body: dict[str, Any]
    optional: tuple[str, ...] = ()


BODY = {
    "register": BodyEndpoint(
        "POST /auth/register",
        "anonymous",
        {"email": "new@example.com", "password": PASSWORD, "full_name": "New", "role": "client"},
    ),
    "booking": BodyEndpoint(
        "POST /bookings",
        "client",
        {"worker_id": REF.worker_id, "title": "Fix the tap", "amount": "80.00", "currency": "USD"},
        optional=("currency",),
    ),
    "stripe_intent": BodyEndpoint(
        "POST /payments/stripe/payment-intent",
        "client",
        {
            "booking_id": REF.unpaid_booking,
            "amount": "150.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
            "metadata": {"order": "A-1"},
        },
        optional=("payment_method", "metadata"),
    ),
    "stripe_confirm": BodyEndpoint(
        "POST /payments/stripe/confirm",
        "client",
        {"payment_intent_id": REF.intent, "booking_id": REF.held_booking},
    ),
    "paypal_create": BodyEndpoint(
        "POST /payments/paypal/create",
        "client",
        {
            "booking_id": REF.unpaid_booking,
            "amount": "150.00",
            "currency": "USD",
            "return_url": "https://app.example.com/ok",
            "cancel_url": "https://app.example.com/cancel",
        },
    ),
    "paypal_execute": BodyEndpoint(
        "POST /payments/paypal/execute",
        "client",
        {"payment_id": REF.order, "payer_id": "PAYER123", "booking_id": REF.paypal_booking},
    ),
    "refund": BodyEndpoint(
        "POST /payments/refund",
        "worker",
        {"payment_id": REF.held, "amount": "10.00", "reason": "Partly done"},
        optional=("amount",),
    ),
    "dispute": BodyEndpoint(
        "POST /payments/disputes",
        "client",
        {"payment_id": REF.held, "reason": "Not done", "description": "Left halfway"},
    ),
    "resolve": BodyEndpoint(
        "POST /payments/disputes/{dispute}/resolve",
        "admin",
        {"outcome": "split", "refund_amount": "10.00", "resolution_notes": "Half each"},
        optional=("refund_amount",),
    ),
    "payout_methods": BodyEndpoint(
        "PUT /payments/payout-methods",
        "worker",
        {"stripe_account_id": "acct_1Other", "paypal_email": "pro@example.com"},
        optional=("stripe_account_id", "paypal_email"),
    ),
    "payout": BodyEndpoint(
        "POST /payments/payouts/request",
        "worker",
        {"amount": "1.00", "payment_method": "stripe", "currency": "USD"},
        optional=("currency",),
    ),
}


def body(endpoint: str, **changes: Any) -> dict[str, Any]:
    """The endpoint's valid body with some fields changed."""
    return {**BODY[endpoint].body, **changes}


def field_cases(
    endpoint: str, name: str, values: Iterable[Any], status: int = 422, who: str | None = None
) -> list[Any]:
    """One case per value of one field, the rest of the body valid."""
    e = BODY[endpoint]
    return [
        case(f"{endpoint}.{name}={v!r:.40}", e.route, who or e.who, status,
             json=body(endpoint, **{name: v}))
        for v in values
    ]  # fmt: skip


def raw_cases(endpoint: str, name: str, raws: Iterable[str]) -> list[Any]:
    """Values only raw JSON can carry (NaN, Infinity, numbers beyond a double)."""
    e = BODY[endpoint]
    template = json.dumps(body(endpoint, **{name: "__RAW__"}), default=lambda r: f"@ref:{r.name}")
    return [
        case(f"{endpoint}.{name}=raw:{raw}", e.route, e.who, 422,
             content=template.replace('"__RAW__"', raw).encode())
        for raw in raws
    ]  # fmt: skip


# fmt: off
# --- 1. authentication: every endpoint behind a token --------------------------------------

AUTHENTICATED = [
    "GET /auth/me", "GET /bookings", "GET /bookings/{unpaid_booking}",
    "POST /bookings/{held_booking}/complete", "POST /bookings/{unpaid_booking}/cancel",
    "GET /payments/", "GET /payments/{held}", "POST /payments/{held}/release",
    "GET /payments/disputes", "POST /payments/disputes/{dispute}/review",
    "GET /payments/payouts", "POST /payments/payouts/{payout}/process",
    "POST /payments/stripe/connect/onboarding",
    "GET /payments/summary/client", "GET /payments/earnings/worker", "GET /payments/transactions",
    "GET /admin/webhooks", "POST /admin/webhooks/{delivery}/replay", "GET /admin/alerts",
]
# Every endpoint without a token; every kind of bad token on a few (one dependency reads
# them all).
BAD_TOKENS = ("expired", "garbage", "forged", "ghost", "basic")
AUTH_CASES = [
    *(case(f"anonymous:{route}", route, "anonymous", 401) for route in AUTHENTICATED),
    *(case(f"anonymous:{e.route}", e.route, "anonymous", 401, json=e.body)
      for e in BODY.values() if e.who != "anonymous"),
    *(case(f"{who}:GET /auth/me", "GET /auth/me", who, 401) for who in BAD_TOKENS),
    *(case(f"{who}:POST /bookings", "POST /bookings", who, 401, json=body("booking"))
      for who in BAD_TOKENS),
    *(case(f"expired:{route}", route, "expired", 401)
      for route in ("GET /payments/{held}", "POST /payments/{held}/release", "GET /admin/alerts")),
]

# --- 2. roles (403) and other users' objects (404) -------------------------------------------

ROLE_CASES = [
    *(case(f"{who} books", "POST /bookings", who, 403, json=body("booking"))
      for who in ("worker", "admin")),
    *(case(f"{who} pays by card", BODY["stripe_intent"].route, who, 403, json=body("stripe_intent"))
      for who in ("worker", "admin")),
    *(case(f"worker: {name}", BODY[name].route, "worker", 403, json=body(name))
      for name in ("stripe_confirm", "paypal_create", "paypal_execute")),
    case("client completes", "POST /bookings/{held_booking}/complete", "client", 403),
    case("worker cancels", "POST /bookings/{held_booking}/cancel", "worker", 403),
    case("worker releases", "POST /payments/{held}/release", "worker", 403),
    case("admin releases", "POST /payments/{held}/release", "admin", 403),
    case("client refunds", "POST /payments/refund", "client", 403, json=body("refund")),
    # Admins see every payment but are neither side of a booking.
    case("admin disputes", "POST /payments/disputes", "admin", 403, json=body("dispute")),
    *(case(f"{who} reviews", "POST /payments/disputes/{dispute}/review", who, 403)
      for who in ("client", "worker")),
    *(case(f"{who} resolves", BODY["resolve"].route, who, 403, json=body("resolve"))
      for who in ("client", "worker")),
    *(case(f"{who} sets payout methods", BODY["payout_methods"].route, who, 403,
           json=body("payout_methods")) for who in ("client", "admin")),
    *(case(f"{who} requests a payout", BODY["payout"].route, who, 403, json=body("payout"))
      for who in ("client", "admin")),
    *(case(f"{who} onboards", "POST /payments/stripe/connect/onboarding", who, 403)
      for who in ("client", "admin")),
    case("worker processes", "POST /payments/payouts/{payout}/process", "worker", 403),
    case("worker's client summary", "GET /payments/summary/client", "worker", 403),
    case("client's worker earnings", "GET /payments/earnings/worker", "client", 403),
    *(case(f"{who} lists webhooks", "GET /admin/webhooks", who, 403)
      for who in ("client", "worker")),
    case("worker replays", "POST /admin/webhooks/{delivery}/replay", "worker", 403),
    case("client lists alerts", "GET /admin/alerts", "client", 403),
]

STRANGERS = ("other_client", "other_worker")
OWNERSHIP_CASES = [
    *(case(f"{who} reads booking", "GET /bookings/{held_booking}", who, 404) for who in STRANGERS),
    *(case(f"{who} reads payment", "GET /payments/{held}", who, 404) for who in STRANGERS),
    case("stranger completes", "POST /bookings/{held_booking}/complete", "other_worker", 404),
    case("stranger cancels", "POST /bookings/{unpaid_booking}/cancel", "other_client", 404),
    case("stranger releases", "POST /payments/{held}/release", "other_client", 404),
    *(case(f"stranger: {name}", BODY[name].route, "other_client", 404, json=body(name))
      for name in ("stripe_intent", "stripe_confirm", "paypal_create", "paypal_execute")),
    case("stranger refunds", "POST /payments/refund", "other_worker", 404, json=body("refund")),
    # The amount's precision depends on the payment's currency: checking it before the
    # caller's right to the payment would tell a stranger that the payment exists.
    case("stranger refunds over-precise", "POST /payments/refund", "other_worker", 404,
         json=body("refund", amount="1.001")),
    *(case(f"{who} disputes", "POST /payments/disputes", who, 404, json=body("dispute"))
      for who in STRANGERS),
]

# --- 3. ids: malformed (422), unknown (404) --------------------------------------------------

PATH_IDS = [
    ("GET /bookings/{id}", "client"),
    ("POST /bookings/{id}/complete", "worker"),
    ("POST /bookings/{id}/cancel", "client"),
    ("GET /payments/{id}", "client"),
    ("POST /payments/{id}/release", "client"),
    ("POST /payments/disputes/{id}/review", "admin"),
    ("POST /payments/disputes/{id}/resolve", "admin"),
    ("POST /payments/payouts/{id}/process", "admin"),
    ("POST /admin/webhooks/{id}/replay", "admin"),
]
MALFORMED_PATH_IDS = ["abc", "0", "-1", "1.5", str(BEYOND_BIGINT)]


def _with_id(route: str, who: str, i: object, status: int) -> Any:
    json_ = body("resolve") if route.endswith("/resolve") else NO_BODY
    return case(route.replace("{id}", str(i)), route.replace("{id}", str(i)), who, status,
                json=json_)


# The routes' ids are typed (`{payment_id:int}`): what is no number reaches no route (404);
# a number out of range is a malformed id (422).
PATH_ID_CASES = [
    *(_with_id(route, who, i, 422 if i.isdigit() else 404)
      for route, who in PATH_IDS for i in MALFORMED_PATH_IDS),
    *(_with_id(route, who, UNKNOWN, 404) for route, who in PATH_IDS),
]

# Each shared input type gets every bad value in one field, and a sample in the others
# (each field is its own declaration and code path; the type's checks are the same).
BAD_BODY_IDS = ["1", "abc", 1.5, 1.0, True, None, 0, -1, BEYOND_BIGINT, [1], {"id": 1}]
SAMPLE_BODY_IDS = ["1", 1.5, True, None, 0, BEYOND_BIGINT]
BODY_IDS = [
    ("booking", "worker_id"), ("stripe_intent", "booking_id"), ("stripe_confirm", "booking_id"),
    ("paypal_create", "booking_id"), ("paypal_execute", "booking_id"), ("refund", "payment_id"),
    ("dispute", "payment_id"),
]
BODY_ID_CASES = [
    *field_cases("booking", "worker_id", BAD_BODY_IDS),
    *(p for endpoint, name in BODY_IDS[1:] for p in field_cases(endpoint, name, SAMPLE_BODY_IDS)),
    *(p for endpoint, name in BODY_IDS for p in field_cases(endpoint, name, [UNKNOWN], 404)),
    # The id of a user who is no worker.
    *field_cases("booking", "worker_id", [REF.client_id], 404),
    *field_cases("stripe_confirm", "payment_intent_id", ["pi_unknown123"], 404),
    *field_cases("paypal_execute", "payment_id", ["UNKNOWNORDER1"], 404),
    # The client's held intent named with another of the client's bookings.
    *field_cases("stripe_confirm", "booking_id", [REF.unpaid_booking], 404),
]

# --- 4. amounts and currencies ---------------------------------------------------------------

BAD_AMOUNTS = [
    "0", 0, "0.00", "-1", -1, "-0.01", "10.001", 10.001, "1e-3", {"value": "1"}, ["1"],
    True, False, "", " ", "abc", "0x10", "1,5", "1_000", " 5 ", "\u0661\u0662\u0663", "\uff15",
    "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "1e400", "1000000.00", 1_000_000,
]
# Every bad amount where the amount is checked in the model (bookings) and where it is
# converted in the endpoint, against the payment's currency (refunds); a sample elsewhere.
SAMPLE_AMOUNTS = ["0", "-1", "10.001", {"value": "1"}, True, "NaN", "1_000", "1000000.00"]
FULL_AMOUNTS = ("booking", "refund")
RAW_AMOUNTS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
AMOUNTS = [
    ("booking", "amount"), ("stripe_intent", "amount"), ("paypal_create", "amount"),
    ("refund", "amount"), ("resolve", "refund_amount"), ("payout", "amount"),
]


def _amount_status(endpoint: str, amount: object) -> int:
    # A refund's and a split's amount belong to a payment: beyond the maximum is more than
    # there is to refund, a rule of the domain (400) rather than a malformed amount.
    over_max = isinstance(amount, str | int) and amount in ("1000000.00", 1_000_000)
    return 400 if endpoint in ("refund", "resolve") and over_max else 422


AMOUNT_CASES = [
    *(p for endpoint, name in AMOUNTS
      for amount in (BAD_AMOUNTS if endpoint in FULL_AMOUNTS else SAMPLE_AMOUNTS)
      for p in field_cases(endpoint, name, [amount], _amount_status(endpoint, amount))),
    *(p for endpoint, name in AMOUNTS
      for p in raw_cases(endpoint, name, RAW_AMOUNTS if endpoint in FULL_AMOUNTS else ["NaN"])),
    *(p for endpoint in ("booking", "stripe_intent", "payout")
      for p in field_cases(endpoint, "amount", [None])),
    # Precision and maximum follow the currency.
    case("JPY 1.5", "POST /bookings", "client", 422,
         json=body("booking", amount="1.5", currency="JPY")),
    case("JPY beyond max", "POST /bookings", "client", 422,
         json=body("booking", amount="100000000", currency="jpy")),
    case("KWD 1.0001", "POST /bookings", "client", 422,
         json=body("booking", amount="1.0001", currency="KWD")),
    case("JPY 1.5 intent", BODY["stripe_intent"].route, "client", 422,
         json=body("stripe_intent", amount="1.5", currency="JPY")),
    case("JPY 1.5 payout", BODY["payout"].route, "worker", 422,
         json=body("payout", amount="1.5", currency="JPY")),
]

BAD_CURRENCIES = ["XXX", "BTC", "US", "USDD", "", " USD", "u\x00d", "€€€", 840, None, True, ["USD"]]
CURRENCY_CASES = [
    *field_cases("booking", "currency", BAD_CURRENCIES),
    *(p for endpoint in ("stripe_intent", "paypal_create", "payout")
      for p in field_cases(endpoint, "currency", ["XXX", "US", "u\x00d", None])),
    *(case(f"{route} currency={cur!r}", route, who, 422, params={"currency": cur})
      for route, who in (("GET /payments/summary/client", "client"),
                         ("GET /payments/earnings/worker", "worker"))
      for cur in ("XXX", "", "US", "usdd", "u\x00d")),
]

# --- 5. text, enums, provider ids, URLs, emails, payout methods -----------------------------

BAD_TEXT = ["", "   ", "a\x00b", 123, True, ["a"], {"a": "b"}, None]
TEXTS = [
    ("booking", "title", 200), ("dispute", "reason", 200), ("dispute", "description", 5000),
    ("refund", "reason", 5000), ("resolve", "resolution_notes", 5000),
    ("register", "full_name", 200),
]
PROVIDER_IDS = [
    ("stripe_intent", "payment_method"), ("stripe_confirm", "payment_intent_id"),
    ("paypal_execute", "payment_id"), ("paypal_execute", "payer_id"),
]
TEXT_CASES = [
    *field_cases("booking", "title", [*BAD_TEXT, "x" * 201]),
    *(p for endpoint, name, limit in TEXTS[1:]
      for p in field_cases(endpoint, name, ["", "   ", "a\x00b", 123, "x" * (limit + 1)])),
    *field_cases("register", "email", ["not-an-email", "", "a@", "@example.com", "a\x00@x.com", 5]),
    *field_cases("register", "password", ["short", "x" * 201, 12345678, None]),
    *field_cases("register", "role", ["admin", "Admin", "CLIENT", "Worker", "", "boss", 1, None]),
    *field_cases("resolve", "outcome", ["SPLIT", "Release", "refund_all", "", 1, None]),
    *field_cases("payout", "payment_method", ["STRIPE", "Paypal", "bank", "", 1, None]),
    *(p for endpoint, name in PROVIDER_IDS
      for p in field_cases(endpoint, name, ["", "pm card", "pi_\x00", "pi/../x", "x" * 256, 12])),
    *(p for name in ("return_url", "cancel_url")
      for p in field_cases("paypal_create", name, [
          "not a url", "javascript:alert(1)", "ftp://example.com/x", "", 5, None,
          "https://app.example.com/" + "x" * 4000])),
    *field_cases("stripe_intent", "metadata", [
        {f"k{i}": "v" for i in range(51)}, {"a": {"nested": 1}}, {"a": [1]}, ["a"], "text"]),
    *field_cases("payout_methods", "stripe_account_id", [
        "not_an_account", "acct_", "acct_has-dash", "acct_" + "a" * 64, "acct_\x00", "", 5]),
    *field_cases("payout_methods", "paypal_email", [
        "nope", "a b@example.com", "pro@", "pro\x00@example.com", "", "x" * 201, 5]),
    case("no payout method", "PUT /payments/payout-methods", "worker", 422, json={}),
    case("null payout methods", "PUT /payments/payout-methods", "worker", 422,
         json={"stripe_account_id": None, "paypal_email": None}),
]

# --- 6. the body as a whole: malformed, wrong shape, missing and unknown fields ------------

RAW_BODIES = {
    "malformed": b'{"amount": ', "array": b"[]", "string": b'"text"', "null": b"null",
    "empty": b"", "empty object": b"{}",
}
SHAPE_CASES = [
    *(case(f"{name}: {label}", e.route, e.who, 422, content=raw)
      for name, e in BODY.items() for label, raw in RAW_BODIES.items()),
    *(case(f"booking: {label}", "POST /bookings", "client", 422, content=raw)
      for label, raw in (("array of object", b'[{"amount": "1"}]'), ("number", b"42"))),
    *(case(f"{name}: unknown field", e.route, e.who, 422, json=body(name, unexpected=1))
      for name, e in BODY.items()),
    *(case(f"{name}: without {field}", e.route, e.who, 422,
           json={k: v for k, v in e.body.items() if k != field})
      for name, e in BODY.items() for field in e.body if field not in e.optional),
    # A misspelt optional field must not turn a partial refund into a full one.
    case("refund: misspelt amount", "POST /payments/refund", "worker", 422,
         json={"payment_id": REF.held, "amout": "1.00", "reason": "typo"}),
    case("booking: client_id given", "POST /bookings", "client", 422,
         json=body("booking", client_id=REF.client_id)),
    case("booking: text/plain", "POST /bookings", "client", 422,
         content=b'{"worker_id": 1, "title": "t", "amount": "1"}', content_type="text/plain"),
    case("booking: lone surrogate", "POST /bookings", "client", 422,
         content=b'{"worker_id": "@ref:worker_id", "title": "\\ud800", "amount": "1"}'),
    # Bytes that are no text: FastAPI's 400.
    case("booking: not utf-8", "POST /bookings", "client", 400,
         content=b'{"title": "\xff\xfe"}', undeclared=True),
    # JSON nested beyond the limit is refused before parsing (http/limits.py).
    case("booking: nested too deep", "POST /bookings", "client", 422,
         content=b"[" * 100_000 + b"]" * 100_000),
    # The OAuth2 token endpoint takes a form.
    case("token: json body", "POST /auth/token", "anonymous", 422,
         json={"username": REF.client_email, "password": PASSWORD}),
    case("token: no body", "POST /auth/token", "anonymous", 422),
    case("token: no password", "POST /auth/token", "anonymous", 422,
         form={"username": REF.client_email}),
    case("token: wrong password", "POST /auth/token", "anonymous", 401,
         form={"username": REF.client_email, "password": "wrong password"}),
    case("token: NUL in email", "POST /auth/token", "anonymous", 401,
         form={"username": "client\x00@example.com", "password": PASSWORD}),
]

# --- 7. lists: skip, limit, filters ----------------------------------------------------------

LISTS = [
    ("GET /bookings", "client"), ("GET /payments/", "client"), ("GET /payments/disputes", "client"),
    ("GET /payments/payouts", "worker"), ("GET /payments/transactions", "worker"),
    ("GET /admin/webhooks", "admin"), ("GET /admin/alerts", "admin"),
]
BAD_PAGES = [
    {"limit": 0}, {"limit": 101}, {"limit": 10**9}, {"limit": -1}, {"limit": "ten"},
    {"limit": 1.5}, {"limit": ""}, {"skip": -1}, {"skip": "x"}, {"skip": 10**20},
]
# All of them on one list, the gravest on the others (one dependency reads them all).
LIST_CASES = [
    *(case(f"GET /payments/ {params}", "GET /payments/", "client", 422, params=params)
      for params in BAD_PAGES),
    *(case(f"{route} {params}", route, who, 422, params=params)
      for route, who in LISTS if route != "GET /payments/"
      for params in ({"limit": 101}, {"limit": 10**9}, {"skip": -1})),
    *(case(f"payments status={s!r}", "GET /payments/", "client", 422, params={"status": s})
      for s in ("HELD", "Held", "unknown", "")),
    *(case(f"webhooks status={s!r}", "GET /admin/webhooks", "admin", 422, params={"status": s})
      for s in ("PROCESSED", "Dead", "unknown", "")),
]

# --- 8. rules of the domain and states (400, 409): nothing changes either --------------------

DOMAIN_CASES = [
    case("intent amount is not the booking's", BODY["stripe_intent"].route, "client", 400,
         json=body("stripe_intent", amount="150.01")),
    case("intent currency is not the booking's", BODY["stripe_intent"].route, "client", 400,
         json=body("stripe_intent", currency="EUR")),
    case("order amount is not the booking's", BODY["paypal_create"].route, "client", 400,
         json=body("paypal_create", amount="149.99")),
    case("intent for a paid booking", BODY["stripe_intent"].route, "client", 409,
         json=body("stripe_intent", booking_id=REF.held_booking)),
    case("refund more than is left", "POST /payments/refund", "worker", 400,
         json=body("refund", amount="150.01")),
    *(case(f"refund a {state} payment", "POST /payments/refund", "worker", 409,
           json=body("refund", payment_id=Ref(state))) for state in ("pending", "disputed")),
    *(case(f"release a {state} payment", f"POST /payments/{{{state}}}/release", "client", 409)
      for state in ("pending", "disputed", "released")),
    *(case(f"dispute a {state} payment", "POST /payments/disputes", "client", 409,
           json=body("dispute", payment_id=Ref(state)))
      for state in ("pending", "disputed", "released")),
    case("review a dispute under review", "POST /payments/disputes/{dispute}/review", "admin", 409),
    case("split without an amount", BODY["resolve"].route, "admin", 400,
         json={"outcome": "split", "resolution_notes": "n"}),
    case("split of everything", BODY["resolve"].route, "admin", 400,
         json=body("resolve", refund_amount="150.00")),
    case("release with an amount", BODY["resolve"].route, "admin", 400,
         json=body("resolve", outcome="release")),
    case("complete an unpaid booking", "POST /bookings/{unpaid_booking}/complete", "worker", 409),
    case("cancel a completed booking", "POST /bookings/{completed_booking}/cancel", "client", 409),
    case("payout beyond the balance", BODY["payout"].route, "worker", 400,
         json=body("payout", amount="1000.00")),
    case("payout from an empty balance", BODY["payout"].route, "worker", 400,
         json=body("payout", currency="EUR")),
    case("payout without that method", BODY["payout"].route, "worker", 400,
         json=body("payout", payment_method="paypal")),
    case("payout without any method", BODY["payout"].route, "other_worker", 400,
         json=body("payout")),
    case("process a processing payout", "POST /payments/payouts/{processing_payout}/process",
         "admin", 409),
    case("replay an unprocessed delivery", "POST /admin/webhooks/{delivery}/replay", "admin", 409),
    case("register an email in another case", "POST /auth/register", "anonymous", 409,
         json=body("register", email=REF.client_email_upper)),
]

# --- 9. webhooks: the signature is the authentication --------------------------------------

EVENT = json.dumps(
    {"id": "evt_bad_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_x"}}}
).encode()
NOW = int(time.time())  # collected a moment before the cases run: well within tolerance


def _stripe(id: str, payload: bytes, signature: str | None) -> Any:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    return case(f"stripe: {id}", "POST /payments/webhooks/stripe", "anonymous", 400,
                content=payload, headers=headers)


def _signed(payload: bytes, at: int | None = None, secret: str = TEST_WEBHOOK_SECRET) -> str:
    return stripe_events.sign(payload, secret, at)


def _paypal(id: str, payload: bytes, signature: str | None) -> Any:
    headers = {PAYPAL_SIGNATURE_HEADER: signature} if signature is not None else {}
    return case(f"paypal: {id}", "POST /payments/webhooks/paypal", "anonymous", 400,
                content=payload, headers=headers)


WEBHOOK_CASES = [
    _stripe("no signature", EVENT, None),
    _stripe("garbage signature", EVENT, "garbage"),
    _stripe("bad timestamp", EVENT, "t=abc,v1=00"),
    _stripe("wrong mac", EVENT, f"t={NOW},v1=00"),
    _stripe("another secret", EVENT, _signed(EVENT, secret="whsec_other")),
    _stripe("stale", EVENT, _signed(EVENT, NOW - 3600)),
    _stripe("from the future", EVENT, _signed(EVENT, NOW + 3600)),
    _stripe("body altered", EVENT + b" ", _signed(EVENT)),
    _stripe("signed non-JSON", b"not json", _signed(b"not json")),
    _stripe("signed array", b"[1, 2]", _signed(b"[1, 2]")),
    _stripe("signed non-event", b"{}", _signed(b"{}")),
    _stripe("signed non-utf-8", b"\xff\xfe", _signed(b"\xff\xfe")),
    _stripe("body too large", b"x" * 1_000_001, _signed(b"x" * 1_000_001)),
    _paypal("no signature", EVENT, None),
    _paypal("wrong signature", EVENT, "00" * 32),
    _paypal("signed non-JSON", b"not json", paypal_simulator_signature(b"not json")),
]

# --- 10. unknown routes and methods ----------------------------------------------------------

ROUTE_CASES = [
    case("unknown path", "GET /nowhere", "client", 404, undeclared=True),
    case("unknown method", "DELETE /payments/{held}", "client", 405, undeclared=True),
    case("GET a POST-only path", "GET /bookings/{held_booking}/complete", "worker", 405,
         undeclared=True),
]
# fmt: on


@pytest.mark.parametrize(
    "c",
    [
        *AUTH_CASES,
        *ROLE_CASES,
        *OWNERSHIP_CASES,
        *PATH_ID_CASES,
        *BODY_ID_CASES,
        *AMOUNT_CASES,
        *CURRENCY_CASES,
        *TEXT_CASES,
        *SHAPE_CASES,
        *LIST_CASES,
        *DOMAIN_CASES,
        *WEBHOOK_CASES,
        *ROUTE_CASES,
    ],
)
async def test_bad_input_is_a_4xx_with_a_detail_and_changes_nothing(world: World, c: Case) -> None:
    await check(world, c)


async def test_the_bodies_the_cases_start_from_are_valid(world: World) -> None:
    """Each case above spoils one thing in an otherwise valid request. The bodies are
    proven valid where that changes nothing: with an unknown id, which answers 404 (not
    422); register's and payout's bodies by the 409 and 400 cases above; the list and
    currency parameters by an answer; and the payout methods' body, last, by using it."""
    world.last = None
    unknown = {
        "booking": {"worker_id": UNKNOWN},
        "stripe_intent": {"booking_id": UNKNOWN},
        "stripe_confirm": {"booking_id": UNKNOWN},
        "paypal_create": {"booking_id": UNKNOWN},
        "paypal_execute": {"booking_id": UNKNOWN},
        "refund": {"payment_id": UNKNOWN},
        "dispute": {"payment_id": UNKNOWN},
    }
    for name, change in unknown.items():
        e = BODY[name]
        method, path = e.route.split(" ", 1)
        await check(world, Case(method, path, e.who, 404, json=body(name, **change)))
    e = BODY["resolve"]
    await check(world, Case("POST", f"/payments/disputes/{UNKNOWN}/resolve", e.who, 404,
                            json=e.body))  # fmt: skip
    for route, who in LISTS:
        method, path = route.split(" ", 1)
        r = await send(world, Case(method, path, who, 200, params={"skip": 0, "limit": 100}))
        assert r.status_code == 200 and r.json()["limit"] == 100, r.text
    for path, who in (("/payments/summary/client", "client"), ("/payments/earnings/worker",
                                                                "worker")):  # fmt: skip
        r = await send(world, Case("GET", path, who, 200, params={"currency": "usd"}))
        assert r.status_code == 200 and r.json()["currency"] == "USD", r.text
    # Last, as it acts: the payout methods' body (the worker's methods change).
    r = await send(world, Case("PUT", "/payments/payout-methods", "worker", 200,
                               json=body("payout_methods")))  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["paypal_email"] == "pro@example.com"


# --- the OpenAPI document and /health --------------------------------------------------------

CONTRACT = [
    "POST /auth/register", "POST /auth/token", "GET /auth/me",
    "POST /bookings", "GET /bookings", "GET /bookings/{id}", "POST /bookings/{id}/complete",
    "POST /bookings/{id}/cancel",
    "POST /payments/stripe/payment-intent", "POST /payments/stripe/confirm",
    "POST /payments/paypal/create", "POST /payments/paypal/execute",
    "GET /payments/", "GET /payments/{id}", "POST /payments/{id}/release",
    "POST /payments/refund",
    "POST /payments/disputes", "GET /payments/disputes", "POST /payments/disputes/{id}/review",
    "POST /payments/disputes/{id}/resolve",
    "PUT /payments/payout-methods", "POST /payments/payouts/request", "GET /payments/payouts",
    "POST /payments/payouts/{id}/process",
    "GET /payments/summary/client", "GET /payments/earnings/worker", "GET /payments/transactions",
    "POST /payments/webhooks/stripe", "POST /payments/webhooks/paypal",
    "POST /payments/stripe/connect/onboarding",
    "GET /admin/webhooks", "POST /admin/webhooks/{id}/replay", "GET /admin/alerts",
]  # fmt: skip


_PARAM = re.compile(r"\{[^}]+\}")


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """'METHOD /path' (under /api/v1, path parameters as `{id}`) -> the operation."""
    return {
        f"{method.upper()} {_PARAM.sub('{id}', path.removeprefix('/api/v1'))}": op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


def _schema(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


async def test_openapi_describes_every_contract_endpoint_and_its_errors(world: World) -> None:
    from openapi_spec_validator import validate

    r = await world.http.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)  # a valid OpenAPI 3.1 document, every $ref resolved
    operations = _operations(doc)
    missing = [route for route in CONTRACT if route not in operations]
    assert missing == [], f"not in /openapi.json: {missing}"
    problems = []
    for route in CONTRACT:
        responses = operations[route]["responses"]
        success = [s for s in responses if s.startswith("2")]
        errors = [s for s in responses if s[0] in "45"]
        if len(success) != 1 or not responses[success[0]]["content"]["application/json"]["schema"]:
            problems.append(f"{route}: no success response model")
        if not errors:
            problems.append(f"{route}: no error response")
        for status in errors:
            schema = _schema(doc, responses[status]["content"]["application/json"]["schema"])
            detail = _schema(doc, schema.get("properties", {}).get("detail", {}))
            if detail.get("type") != "string":
                problems.append(f"{route} {status}: not {{'detail': string}} but {schema}")
    assert problems == [], "\n".join(problems)


async def test_health_answers_as_the_contract_says(world: World) -> None:
    r = await world.http.get("/health")  # no token
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "database": "ok",
        "providers": {"stripe": "simulated", "paypal": "simulated"},
    }
    health = _operations(world.openapi)["GET /health"]["responses"]
    assert {"200", "503"} <= set(health), health
    schema = _schema(world.openapi, health["200"]["content"]["application/json"]["schema"])
    assert {"status", "database", "providers"} <= set(schema.get("properties", {})), schema
