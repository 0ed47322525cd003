"""Bad input answers a clear 4xx with `{"detail": "..."}`, never a 500, and changes nothing.

One world (tests/http/world.py: users of every role; bookings and payments in the states
the cases need; a dispute, payouts, a webhook delivery) is built once for the module. Each
case snapshots every table (row count and a digest of all its rows) and the ledger
balances, sends one bad request, checks the exact status and the error's shape, and
snapshots again: the two must be equal, and the status must be one the OpenAPI document
declares for the operation. Since no case may change anything, the cases share the world
rather than empty the database between them (the module overrides conftest's
`clean_database`), and the ledger's invariants, which nothing could have broken, are
verified once, at the end.

The corpus is tests/http/validation_cases.py; each package's `test_validation.py` runs the
cases on its own endpoints, this one those on no endpoint (unknown routes), then proves the
bodies the cases spoil valid and checks the OpenAPI document and /health.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.http.cases import BODY, Case, body, check, send
from tests.http.validation_cases import LISTS, cases_for
from tests.http.world import UNKNOWN, World, bad_input_fixtures

world, clean_database = bad_input_fixtures()


@pytest.mark.parametrize("c", cases_for("http"))
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
    "POST /payments/payouts/{id}/process", "POST /payments/payouts/process",
    "POST /payments/payouts/{id}/reject", "POST /payments/payouts/{id}/hold",
    "POST /payments/payouts/{id}/release-hold",
    "GET /payments/summary/client", "GET /payments/earnings/worker", "GET /payments/transactions",
    "GET /payments/balances",
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
