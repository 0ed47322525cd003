"""PayPal for real, recurring schedules (Vault v3): the PayPalProvider saves the payer's
PayPal (setup token, approved at PayPal, exchanged for a payment token) and pays each
occurrence with an order on that vault id, held in escrow like a one-off PayPal payment.
Every exchange is validated against vault_payment_tokens_v3.json and the Orders and
Payments specs. The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handwork_payments.models import RecurringSchedule
from handwork_payments.providers.base import SetupState
from handwork_payments.providers.paypal import PayPalError, vault
from handwork_payments.recurring.runs import run_due
from tests.helpers import Api, Party
from tests.peers.paypal_double import PayPalDouble, SpecValidator
from tests.providers.paypal.harness import PREFIX, assert_spec_checked, calls
from tests.recurring.flows import payments_of

START = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
VAULT_OPS = ("setup_tokens.create", "setup_tokens.get", "payment_tokens.create")


async def _schedule(
    api: Api, client: Party, worker: Party, amount: str, currency: str
) -> dict[str, Any]:
    body = {
        "worker_id": worker.id,
        "title": "Monthly clean",
        "amount": amount,
        "currency": currency,
        "interval": "monthly",
        "starts_at": START.isoformat(),
        "payment_method": "paypal",
    }
    r = await api.post("/recurring-schedules", client, body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def _row(api: Api, schedule_id: int) -> RecurringSchedule:
    async with api.runtime.sessions() as session:
        row = await session.get(RecurringSchedule, schedule_id)
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("amount", "currency", "minor", "fee"),
    [("150.00", "USD", 15000, 750), ("15000", "JPY", 15000, 750)],
)
async def test_saved_paypal_pays_each_month_held_in_escrow(
    api: Api, double: PayPalDouble, amount: str, currency: str, minor: int, fee: int
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    created = await _schedule(api, client, worker, amount, currency)
    sid = created["id"]
    assert created["status"] == "pending_setup"
    # A setup token for PayPal, merchant-initiated use, our return and cancel URLs.
    [setup_id] = list(double.setup_tokens)
    token = double.setup_tokens[setup_id]
    assert token["paypal"] == {"usage_type": "MERCHANT", "customer_type": "CONSUMER"}
    settings = api.runtime.settings
    assert token["experience"]["return_url"] == settings.paypal_vault_return_url
    assert token["experience"]["cancel_url"] == settings.paypal_vault_cancel_url
    [create] = calls(double, "setup_tokens.create")
    assert create.request_id == f"{PREFIX}-recurring-{sid}-setup-token"
    assert created["setup"]["approval_url"] == (
        f"https://www.sandbox.paypal.com/agreements/approve?approval_session_id={setup_id}"
    )
    # Not approved yet: reading the schedule asks PayPal and changes nothing.
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert (shown["status"], shown["setup"]["approval_url"]) == (
        "pending_setup",
        created["setup"]["approval_url"],
    )
    assert calls(double, "payment_tokens.create") == []

    # The payer approves at PayPal and comes back: reading the schedule saves the token.
    double.approve_setup(setup_id)
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert (shown["status"], shown["next_run_at"]) == ("active", "2027-01-31T09:00:00Z")
    assert shown["setup"] == {"setup_intent_id": None, "client_secret": None, "approval_url": None}
    [vault_id] = list(double.payment_tokens)
    [exchange] = calls(double, "payment_tokens.create")
    assert exchange.request_id == f"{PREFIX}-recurring-{sid}-payment-token"
    row = await _row(api, sid)
    assert (row.setup_id, row.saved_method, row.customer_id) == (
        setup_id,
        vault_id,
        token["customer_id"],
    )

    # Two occurrences: each an AUTHORIZE order paid with the vault id, held, not captured.
    for moment in (START, datetime(2027, 2, 28, 9, 0, tzinfo=UTC)):
        assert await run_due(api.runtime, now=moment) == 1
        assert await run_due(api.runtime, now=moment) == 0
    payments = await payments_of(api.runtime, sid)
    assert [
        (p.status, p.hold_kind, p.amount, p.platform_fee, p.worker_amount) for p in payments
    ] == [("held", "authorized", minor, fee, minor - fee)] * 2
    orders = [double.orders[str(p.paypal_payment_id)] for p in payments]
    assert [(o["intent"], o["status"], o["vault_id"]) for o in orders] == [
        ("AUTHORIZE", "COMPLETED", vault_id)
    ] * 2
    assert [o["unit"]["custom_id"] for o in orders] == [
        f"{PREFIX}-payment-{p.id}" for p in payments
    ]
    assert [c.request_id for c in calls(double, "orders.create")] == [
        f"{PREFIX}-payment-{p.id}-hold" for p in payments
    ]
    assert calls(double, "orders.authorize") == []  # authorised at creation

    # Released like any PayPal payment: the authorisation captured for the exact amount.
    first = (await api.get(f"/recurring-schedules/{sid}", client))["runs"][0]
    r = await api.post(f"/bookings/{first['booking_id']}/complete", worker)
    assert r.status_code == 200, r.text
    r = await api.post(f"/payments/{first['payment_id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    [capture] = double.captures.values()
    assert (capture["amount"], capture["currency"]) == (minor, currency)
    assert_spec_checked(double, *VAULT_OPS, "orders.create", "authorizations.capture")


async def test_a_declined_saved_paypal_is_retried_and_recovers(
    api: Api, double: PayPalDouble
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    created = await _schedule(api, client, worker, "80.00", "USD")
    sid = created["id"]
    [setup_id] = list(double.setup_tokens)
    double.approve_setup(setup_id)
    assert (await api.get(f"/recurring-schedules/{sid}", client))["status"] == "active"
    [vault_id] = list(double.payment_tokens)
    double.set_declines(vault_id, True)
    assert await run_due(api.runtime, now=START) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"], run["payment_id"]) == ("retrying", 1, None)
    assert "authorization denied" in run["last_error"]
    assert shown["next_run_at"] == "2027-02-01T09:00:00Z"
    double.set_declines(vault_id, False)
    assert await run_due(api.runtime, now=START + DAY) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"], run["last_error"]) == ("held", 2, None)
    payments = await payments_of(api.runtime, sid)
    assert [(p.status, p.amount, p.platform_fee) for p in payments] == [
        ("failed", 8000, 400),
        ("held", 8000, 400),
    ]
    # Two orders, each under its own payment's key: the retry is a new payment.
    assert [c.request_id for c in calls(double, "orders.create")] == [
        f"{PREFIX}-payment-{p.id}-hold" for p in payments
    ]
    assert_spec_checked(double, *VAULT_OPS)


async def test_a_lost_payment_token_answer_is_found_in_the_customers_vault(
    api: Api, double: PayPalDouble
) -> None:
    """PayPal made the payment token but its answer never came: the schedule stays pending;
    the next read finds the setup token VAULTED and its payment token among its customer's
    (PayPal keeps Vault request ids for 3 hours only, so no second exchange is sent)."""
    client, worker = await api.user("client"), await api.user("worker")
    created = await _schedule(api, client, worker, "40.00", "USD")
    sid = created["id"]
    [setup_id] = list(double.setup_tokens)
    double.approve_setup(setup_id)
    double.fail_next("payment_tokens.create", "timeout_after")
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert shown["status"] == "pending_setup"
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert shown["status"] == "active"
    [vault_id] = list(double.payment_tokens)
    assert (await _row(api, sid)).saved_method == vault_id
    [exchange] = calls(double, "payment_tokens.create")
    assert exchange.request_id == f"{PREFIX}-recurring-{sid}-payment-token"
    assert len(calls(double, "payment_tokens.list")) == 1
    assert_spec_checked(double, *VAULT_OPS, "payment_tokens.list")


def test_the_vault_spec_still_refuses_other_token_types(paypal_specs: SpecValidator) -> None:
    """Only SETUP_TOKEN is read as the spec's BILLING_AGREEMENT: any other type, and any
    other field the spec refuses, is still a violation."""
    if not paypal_specs.enabled:
        pytest.skip(paypal_specs.reason or "no specs")
    headers = {
        "authorization": "Bearer A21AAdouble",
        "content-type": "application/json",
        "paypal-request-id": "hwpp-recurring-1-x",
    }
    answer = json.dumps({"id": "abcd1234", "customer": {"id": "CUST123"}}).encode()
    problems = []
    for token in ({"id": "5C991763VB2781612", "type": "PAYMENT_TOKEN"}, {"type": "SETUP_TOKEN"}):
        sent = json.dumps({"payment_source": {"token": token}}).encode()
        found = paypal_specs.validate(
            "payment_tokens.create", "POST", "/v3/vault/payment-tokens", [], headers, sent,
            201, {"content-type": "application/json"}, answer,
        )  # fmt: skip
        assert len(found) == 1, found
        problems += found
    assert "PAYMENT_TOKEN" in problems[0] and "'id' is a required property" in problems[1]
    paypal_specs.forget(problems)


async def test_a_vaulted_order_left_approved_is_authorised_at_once(
    api: Api, double: PayPalDouble
) -> None:
    """Should PayPal leave the vaulted order APPROVED, the adapter authorises it in the same
    step, under a key derived from the hold's; a decline there fails the payment (402 path)
    and is dunned the same way."""
    double.vault_authorizes_at_creation = False
    client, worker = await api.user("client"), await api.user("worker")
    created = await _schedule(api, client, worker, "150.00", "USD")
    sid = created["id"]
    [setup_id] = list(double.setup_tokens)
    double.approve_setup(setup_id)
    assert (await api.get(f"/recurring-schedules/{sid}", client))["status"] == "active"
    [vault_id] = list(double.payment_tokens)
    double.set_declines(vault_id, True)
    assert await run_due(api.runtime, now=START) == 1
    (run,) = (await api.get(f"/recurring-schedules/{sid}", client))["runs"]
    assert (run["status"], run["attempts"]) == ("retrying", 1)
    assert "PAYER_CANNOT_PAY" in run["last_error"]
    double.set_declines(vault_id, False)
    assert await run_due(api.runtime, now=START + DAY) == 1
    (run,) = (await api.get(f"/recurring-schedules/{sid}", client))["runs"]
    assert (run["status"], run["attempts"]) == ("held", 2)
    payments = await payments_of(api.runtime, sid)
    assert [(p.status, p.hold_kind, p.amount) for p in payments] == [
        ("failed", None, 15000),
        ("held", "authorized", 15000),
    ]
    assert [c.request_id for c in calls(double, "orders.authorize")] == [
        f"{PREFIX}-payment-{p.id}-hold-authorize" for p in payments
    ]
    assert_spec_checked(double, *VAULT_OPS, "orders.authorize")


def test_a_vaulted_setup_token_takes_its_customers_one_paypal_token() -> None:
    paypal = {"payment_source": {"paypal": {"payer_id": "QYR5Z8XDVJNXQ"}}}
    card = {"id": "card0001", "payment_source": {"card": {"last_digits": "1111"}}}
    one = {"customer": {"id": "CUST1234"}, "payment_tokens": [card, {"id": "pp000001", **paypal}]}
    saved = vault.found_setup("5C991763VB2781612", one)
    assert (saved.state, saved.payment_method) == (SetupState.SUCCEEDED, "pp000001")
    for tokens in ([], [{"id": "pp000001", **paypal}, {"id": "pp000002", **paypal}]):
        with pytest.raises(PayPalError) as refused:
            vault.found_setup("5C991763VB2781612", {"payment_tokens": tokens})
        assert refused.value.code == "VAULTED_TOKEN_NOT_FOUND"
