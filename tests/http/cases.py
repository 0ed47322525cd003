"""The bad-input corpus's machinery: a `Case` (one request that spoils one thing), how it
is sent to the world and checked (the exact status, `{"detail": "..."}`, a status the
OpenAPI document declares, and nothing changed), and the valid bodies the cases spoil."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD
from tests.http.world import World, snapshot


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
