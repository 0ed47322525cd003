"""The malformed requests of the security review (issue 9): each answers a 4xx with
`{"detail": "..."}` and changes nothing in the database.

The corpus is this module's cases and those of tests/http/validation_cases.py (authentication,
roles, ids, amounts, currencies, text, shapes, lists, rules, webhook signatures, routes),
run on the same world with the same proof of "nothing changed": every table's rows and
every ledger balance, before and after. Where the issue names the status (405, 413, 422)
the case asserts it; elsewhere any 4xx will do, as long as it is one and carries a detail.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from handwork_payments.auth import tokens
from handwork_payments.ledger.verify import verify
from handwork_payments.providers import stripe_events
from handwork_payments.providers.simulated import (
    PAYPAL_SIGNATURE_HEADER,
    paypal_simulator_signature,
)
from handwork_payments.runtime import Runtime
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.http.world import World, seeded, snapshot

FOUR_XX = frozenset(range(400, 500))


@dataclass(frozen=True)
class Bad:
    method: str
    path: str  # under /api/v1
    who: str = "anonymous"
    statuses: frozenset[int] = FOUR_XX
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, Any] = field(default_factory=dict)


def bad(id: str, route: str, **kw: Any) -> Any:
    method, path = route.split(" ", 1)
    status = kw.pop("status", None)
    if status is not None:
        kw["statuses"] = frozenset({status})
    return pytest.param(Bad(method, path, **kw), id=id)


NOW = int(time.time())  # collected a moment before the cases run: well within tolerance


def stripe(event: Any) -> dict[str, Any]:
    """A Stripe delivery signed with the test secret: body and headers."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    return {
        "content": body,
        "headers": {"Stripe-Signature": stripe_events.sign(body, TEST_WEBHOOK_SECRET, NOW)},
    }


def paypal(body: bytes, signed: bool = True) -> dict[str, Any]:
    headers = {PAYPAL_SIGNATURE_HEADER: paypal_simulator_signature(body)} if signed else {}
    return {"content": body, "headers": headers}


def nested(size: int = 200_000) -> bytes:
    """A JSON value nested about `size` / 12 levels deep, about `size` bytes long."""
    depth = size // 12
    return b'{"a": ' * depth + b"1" + b"}" * depth


def event(**changes: Any) -> dict[str, Any]:
    base = {"id": "evt_corpus", "type": "payment_intent.succeeded", "data": {"object": {}}}
    return base | changes


EVENT = json.dumps(event(data={"object": {"id": "pi_nobody"}})).encode()
MIB = 1024 * 1024
INTENT = "POST /payments/stripe/payment-intent"


def intent(metadata: Any) -> dict[str, Any]:
    return {
        "json": {
            "booking_id": "@unpaid_booking",
            "amount": "150.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
            "metadata": metadata,
        },
        "who": "client",
    }


# fmt: off
CASES = [
    # --- Stripe-Signature ------------------------------------------------------------------
    bad("stripe: non-ASCII v1", "POST /payments/webhooks/stripe",
        content=EVENT, headers={"Stripe-Signature": f"t={NOW},v1=\u00e9\u00e9".encode()}),
    # Header bytes are Latin-1 to the server: 0xB2 is "²", a digit to str.isdigit.
    bad("stripe: t=superscript two", "POST /payments/webhooks/stripe",
        content=EVENT, headers={"Stripe-Signature": "t=\u00b2,v1=00".encode("latin-1")}),
    bad("stripe: two t, the first bad", "POST /payments/webhooks/stripe",
        content=EVENT, headers={"Stripe-Signature": f"t=x,t={NOW},v1=00"}),
    # --- bodies nested deep (200 kB) -------------------------------------------------------
    bad("stripe: nested 200 kB, signed", "POST /payments/webhooks/stripe",
        **stripe(nested())),
    bad("stripe: nested 200 kB, unsigned", "POST /payments/webhooks/stripe",
        content=nested()),
    bad("paypal: nested 200 kB, signed", "POST /payments/webhooks/paypal",
        **paypal(nested())),
    bad("paypal: nested 200 kB, unsigned", "POST /payments/webhooks/paypal",
        **paypal(nested(), signed=False)),
    bad("bookings: nested 200 kB", "POST /bookings", who="client", content=nested()),
    # --- signed Stripe events of the wrong shape -------------------------------------------
    bad("stripe: data.object a list", "POST /payments/webhooks/stripe",
        **stripe(event(data={"object": [1, 2]}))),
    bad("stripe: data.object a string", "POST /payments/webhooks/stripe",
        **stripe(event(data={"object": "pi_1"}))),
    bad("stripe: data a list", "POST /payments/webhooks/stripe",
        **stripe(event(data=[1]))),
    bad("stripe: integer event id", "POST /payments/webhooks/stripe",
        **stripe(event(id=12345))),
    bad("stripe: integer object id", "POST /payments/webhooks/stripe",
        **stripe(event(data={"object": {"id": 12345, "object": "payment_intent"}}))),
    bad("stripe: null type", "POST /payments/webhooks/stripe",
        **stripe(event(type=None))),
    bad("stripe: event id of 256 characters", "POST /payments/webhooks/stripe",
        **stripe(event(id="evt_" + "x" * 252))),
    bad("stripe: event type of 300 characters", "POST /payments/webhooks/stripe",
        **stripe(event(type="payment_intent." + "x" * 285))),
    bad("paypal: event id of 256 characters", "POST /payments/webhooks/paypal",
        **paypal(json.dumps({"id": "WH-" + "x" * 253, "event_type": "PAYMENT.CAPTURE.COMPLETED",
                             "resource": {"id": "X"}}).encode())),
    bad("paypal: resource a list", "POST /payments/webhooks/paypal",
        **paypal(json.dumps({"id": "WH-LIST", "event_type": "PAYMENT.CAPTURE.COMPLETED",
                             "resource": [1]}).encode())),
    # --- NUL bytes and oversized ids where the database would be asked ----------------------
    bad("simulator: NUL in PayPal token", "GET /simulator/paypal/checkoutnow",
        params={"token": "ORDER\x00X"}),
    bad("simulator: NUL in Stripe intent id", "GET /simulator/stripe/payment_intents/pi_%00x"),
    bad("simulator: NUL in intent to confirm",
        "POST /simulator/stripe/payment_intents/pi_%00x/confirm",
        json={"payment_method": "pm_card_visa"}),
    bad("token: NUL in password", "POST /auth/token", status=401,
        headers={"content-type": "application/x-www-form-urlencoded"},
        content=b"username=%40ref&password=a%00b"),
    # --- tokens whose subject no user can have ----------------------------------------------
    bad("jwt: sub 2**70", "GET /auth/me", who="sub_2_70", status=401),
    bad("jwt: sub -1", "GET /auth/me", who="sub_negative", status=401),
    bad("jwt: sub not a number", "GET /auth/me", who="sub_text", status=401),
    # --- methods on fixed paths the {payment_id} route must not swallow ---------------------
    bad("GET /payments/refund", "GET /payments/refund", who="admin", status=405),
    bad("GET /payments/payout-methods", "GET /payments/payout-methods", who="worker", status=405),
    bad("GET /payments/payouts/request", "GET /payments/payouts/request", who="worker",
        status=405),
    # --- bodies over MAX_REQUEST_BYTES (1 MiB) ----------------------------------------------
    bad("bookings: 2 MiB body", "POST /bookings", who="client", status=413,
        content=b'{"title": "' + b"x" * 2 * MIB + b'"}'),
    bad("stripe: 2 MiB body", "POST /payments/webhooks/stripe", status=413,
        **stripe(b'{"id": "' + b"x" * 2 * MIB + b'"}')),
    bad("paypal: 2 MiB body", "POST /payments/webhooks/paypal", status=413,
        **paypal(b'{"id": "' + b"x" * 2 * MIB + b'"}')),
    bad("token: 2 MiB form", "POST /auth/token", status=413,
        headers={"content-type": "application/x-www-form-urlencoded"},
        content=b"username=a&password=" + b"x" * 2 * MIB),
    # --- payment_metadata beyond Stripe's limits --------------------------------------------
    bad("metadata: 51 keys", INTENT, status=422,
        **intent({f"k{i}": "v" for i in range(51)})),
    bad("metadata: key of 41 characters", INTENT, status=422, **intent({"k" * 41: "v"})),
    bad("metadata: value of 501 characters", INTENT, status=422,
        **intent({"k": "v" * 501})),
    bad("metadata: nested value", INTENT, status=422, **intent({"k": {"a": 1}})),
]
# fmt: on


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """Overrides conftest's: the cases share one world and each proves it changed nothing;
    the ledger's invariants are verified once, at the end."""


@pytest.fixture(scope="module")
async def world(runtime: Runtime) -> AsyncIterator[World]:
    async with seeded(runtime) as built:
        secret = runtime.jwt_secret
        built.tokens |= {
            "sub_2_70": tokens.issue(2**70, secret, 60),
            "sub_negative": tokens.issue(-1, secret, 60),
            "sub_text": jwt_with_sub("client", secret),
        }
        yield built
    async with runtime.sessions() as session:
        problems = await verify(session)
    assert problems == [], "ledger invariants broken:\n" + "\n".join(problems)


def jwt_with_sub(sub: str, secret: str) -> str:
    import jwt

    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, secret, algorithm="HS256")


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


async def send(world: World, c: Bad) -> httpx.Response:
    headers = world.headers(c.who) | c.headers
    kwargs: dict[str, Any] = {"params": c.params}
    if c.content is not None:
        kwargs["content"] = c.content
        headers.setdefault("content-type", "application/json")
    elif c.json is not None:
        kwargs["json"] = _fill(c.json, world.ids)
    url = "/api/v1" + c.path.format(**world.ids)
    return await world.http.request(c.method, url, headers=headers, **kwargs)


@pytest.mark.parametrize("c", CASES)
async def test_bad_input_is_a_4xx_with_a_detail_and_changes_nothing(world: World, c: Bad) -> None:
    before = await snapshot(world.runtime)
    r = await send(world, c)
    assert r.status_code in c.statuses, f"{r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    assert await snapshot(world.runtime) == before, f"{c.method} {c.path} changed the database"
