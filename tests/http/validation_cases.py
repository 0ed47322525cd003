"""The bad-input corpus (the security review's malformed requests): authentication,
roles, ownership, ids, amounts, currencies, text, shapes, lists, domain rules, webhook
signatures and routes, each case spoiling one thing in an otherwise valid request.

Each domain's `test_validation.py` runs the cases of its own endpoints (`cases_for`), on a
world of its own; a case belongs to the package whose router serves its path."""

from __future__ import annotations

import json
import time
from typing import Any

from handwork_payments.providers import stripe_events
from handwork_payments.providers.simulated import (
    PAYPAL_SIGNATURE_HEADER,
    paypal_simulator_signature,
)
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import PASSWORD
from tests.http.cases import BODY, NO_BODY, REF, Ref, body, case, field_cases, raw_cases
from tests.http.world import UNKNOWN

BEYOND_BIGINT = 2**63


# fmt: off
# --- 1. authentication: every endpoint behind a token --------------------------------------

AUTHENTICATED = [
    "GET /auth/me", "GET /bookings", "GET /bookings/{unpaid_booking}",
    "POST /bookings/{held_booking}/complete", "POST /bookings/{unpaid_booking}/cancel",
    "GET /payments/", "GET /payments/{held}", "POST /payments/{held}/release",
    "GET /payments/disputes", "POST /payments/disputes/{dispute}/review",
    "GET /payments/payouts", "POST /payments/payouts/{payout}/process",
    "POST /payments/payouts/{payout}/release-hold",
    "POST /payments/stripe/connect/onboarding",
    "GET /payments/summary/client", "GET /payments/earnings/worker", "GET /payments/transactions",
    "GET /payments/balances",
    "GET /admin/webhooks", "POST /admin/webhooks/{delivery}/replay", "GET /admin/alerts",
    "POST /admin/alerts/{alert}/acknowledge", "GET /admin/analytics",
    "GET /admin/chargebacks/{dispute}/evidence", "POST /admin/chargebacks/{dispute}/evidence",
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
    ("POST /payments/payouts/{id}/release-hold", "admin"),
    ("POST /admin/webhooks/{id}/replay", "admin"),
    ("GET /admin/chargebacks/{id}/evidence", "admin"),
    ("POST /admin/chargebacks/{id}/evidence", "admin"),
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
    {"starting_after": 0}, {"starting_after": "x"}, {"starting_after": 2**63},
    {"starting_after": -5}, {"starting_after": ""},
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


# Milestones (issue 13): 2 to 20, each more than 0 in the currency's precision, adding up
# to the booking's amount exactly; a milestone named must be the payment's booking's.
def _parts(*amounts: str) -> list[dict[str, str]]:
    return [{"title": f"Part {n}", "amount": a} for n, a in enumerate(amounts, 1)]


MILESTONE_CASES = [
    *(
        case(
            f"milestones: {label}",
            "POST /bookings",
            "client",
            422,
            json=body("booking", milestones=value),
        )
        for label, value in (
            ("one", _parts("80.00")),
            ("twenty-one", _parts(*["4.00"] * 20, "0.00")),
            ("twenty-one adding up", [{"title": "p", "amount": "1.00"}] * 21),
            ("sum short", _parts("40.00", "39.99")),
            ("sum over", _parts("40.00", "40.01")),
            ("a zero part", _parts("80.00", "0")),
            ("a negative part", _parts("81.00", "-1.00")),
            ("three decimals", _parts("40.005", "39.995")),
            ("no title", [{"amount": "40.00"}, {"amount": "40.00"}]),
            ("an unknown field", [{"title": "a", "amount": "40.00", "due": "x"}] * 2),
            ("not a list", {"title": "a", "amount": "80.00"}),
            ("empty", []),
        )
    ),
    case(
        "milestones: JPY 1.5",
        "POST /bookings",
        "client",
        422,
        json=body("booking", amount="3", currency="JPY", milestones=_parts("1.5", "1.5")),
    ),
    case(
        "milestones: KWD 0.0005",
        "POST /bookings",
        "client",
        422,
        json=body("booking", amount="1", currency="KWD", milestones=_parts("0.9995", "0.0005")),
    ),
    case(
        "release a milestone of no booking",
        "POST /payments/{held}/release",
        "client",
        404,
        json={"milestone_id": 1},
    ),
    case(
        "release milestone_id 0",
        "POST /payments/{held}/release",
        "client",
        422,
        json={"milestone_id": 0},
    ),
    case(
        "release milestone_id text",
        "POST /payments/{held}/release",
        "client",
        422,
        json={"milestone_id": "1"},
    ),
    case(
        "refund of an unknown milestone",
        "POST /payments/refund",
        "worker",
        404,
        json=body("refund", milestone_id=1),
    ),
]

ALL_CASES = [
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
    *MILESTONE_CASES,
]

# Path prefix (under /api/v1) -> the package whose router serves it; the first match wins,
# so the longer prefixes under /payments come first. Anything else is routing: http.
_PACKAGES = [
    ("/payments/disputes", "disputes"),
    ("/admin/chargebacks", "disputes"),
    ("/payments/webhooks", "webhooks"),
    ("/payments/stripe/connect", "connect"),
    ("/payments/payout", "payouts"),
    ("/payments/summary", "analytics"),
    ("/payments/earnings", "analytics"),
    ("/payments/transactions", "analytics"),
    ("/payments", "payments"),
    ("/bookings", "bookings"),
    ("/auth", "auth"),
    ("/admin", "admin"),
]


def package_of(path: str) -> str:
    return next((package for prefix, package in _PACKAGES if path.startswith(prefix)), "http")


def cases_for(package: str) -> list[Any]:
    """The corpus's cases on the endpoints of one package, in the corpus's order."""
    return [p for p in ALL_CASES if package_of(p.values[0].path) == package]
