"""The real PayPalProvider against our PayPal double (tests/peers/paypal_double.py), every
exchange validated against PayPal's official OpenAPI specs in ../shared/paypal-openapi/;
and, when PAYPAL_MODE=sandbox with PAYPAL_CLIENT_ID / PAYPAL_CLIENT_SECRET in the
environment, against PayPal's sandbox itself (validated the same way)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from handwork_payments.providers.base import (
    ChargebackOutcome,
    EventKind,
    HoldRef,
    HoldState,
    InvalidSignatureError,
    NewHold,
    PaymentDeclinedError,
    PayoutOrder,
    ProviderError,
    ProviderIds,
    ProviderUnavailableError,
    StatementKind,
    TransferState,
)
from handwork_payments.providers.paypal import (
    PayPalDeclinedError,
    PayPalError,
    PayPalProvider,
    paypal_value,
    transfer_state,
)
from handwork_payments.providers.paypal import events as paypal_events
from handwork_payments.providers.paypal import statements as paypal_statements
from handwork_payments.settings import Settings
from tests.peers.paypal_double import (
    PayPalDouble,
    SpecValidator,
    ValidatingTransport,
    iter_paypal_double,
)

CLIENT_TIMEOUT_SECONDS = 1.0
# Every id sent to the provider starts with it (a new one per run: real Stripe test mode
# remembers idempotency keys for a day).
PREFIX = "t" + uuid.uuid4().hex[:10]
IDS = ProviderIds(PREFIX)
RETURN_URL = "https://handwork.example/paypal/return"
CANCEL_URL = "https://handwork.example/paypal/cancel"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def paypal_specs(pytestconfig: pytest.Config) -> Iterator[SpecValidator]:
    """PayPal's specs, loaded once per session. Absent specs are said out loud."""
    validator = SpecValidator()
    if not validator.enabled:
        warnings.warn(pytest.PytestWarning(validator.reason), stacklevel=1)
        _say(pytestconfig, f"NOTE: {validator.reason}")
    yield validator
    _say(pytestconfig, validator.summary())


def _say(config: pytest.Config, line: str) -> None:
    """A line on the terminal even under output capture (also with -q)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    else:
        reporter.write_line(line)


@pytest.fixture
def double(paypal_specs: SpecValidator) -> Iterator[PayPalDouble]:
    yield from iter_paypal_double(paypal_specs, stall_seconds=CLIENT_TIMEOUT_SECONDS * 2)


def settings_for(double: PayPalDouble, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "paypal_client_id": double.client_id,
        "paypal_client_secret": double.client_secret,
        "paypal_mode": "sandbox",
        "paypal_api_base": double.url,
        "paypal_webhook_id": double.webhook_id,
        "paypal_webhook_verification": "api",
        "provider_timeout_seconds": CLIENT_TIMEOUT_SECONDS,
        "provider_id_prefix": PREFIX,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def provider(double: PayPalDouble) -> AsyncIterator[PayPalProvider]:
    adapter = PayPalProvider(settings_for(double), rate_limit_backoff_seconds=0.01)
    yield adapter
    await adapter.aclose()


def assert_spec_checked(double: PayPalDouble, *operations: str) -> None:
    """Every exchange went through the spec validator, these operations among them (when
    the specs are present; otherwise the session fixture already warned)."""
    if not double.validator or not double.validator.enabled:
        return
    assert double.validated == len(double.calls)
    for operation in operations:
        assert double.validated_ops[operation] > 0, f"{operation} was never validated"
    assert double.violations == []


async def authorized_hold(
    provider: PayPalProvider,
    double: PayPalDouble,
    payment_id: int,
    amount: int,
    currency: str = "USD",
) -> HoldRef:
    hold = await provider.create_hold(
        NewHold(
            payment_id=payment_id,
            booking_id=payment_id + 1000,
            amount=amount,
            currency=currency,
            return_url=RETURN_URL,
            cancel_url=CANCEL_URL,
        ),
        idempotency_key=f"payment-{payment_id}-create",
    )
    double.approve(hold.provider_payment_id)
    held = await provider.confirm_hold(
        provider_payment_id=hold.provider_payment_id,
        payer_id="QYR5Z8XDVJNXQ",
        idempotency_key=f"payment-{payment_id}-execute",
    )
    assert held.state is HoldState.AUTHORIZED
    return HoldRef(hold.provider_payment_id, held.authorization_id)


# --------------------------------------------------------------------------- holds


async def test_create_approve_authorize_capture_refund(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    hold = await provider.create_hold(
        NewHold(
            payment_id=41,
            booking_id=7,
            amount=12345,
            currency="usd",
            return_url=RETURN_URL,
            cancel_url=CANCEL_URL,
        ),
        idempotency_key="payment-41-create",
    )
    order_id = hold.provider_payment_id
    assert hold.state is HoldState.REQUIRES_APPROVAL
    assert hold.amount == 12345 and hold.currency == "USD"
    assert hold.approval_url == f"https://www.sandbox.paypal.com/checkoutnow?token={order_id}"
    order = double.orders[order_id]
    assert order["intent"] == "AUTHORIZE"
    assert order["unit"]["amount"] == {"currency_code": "USD", "value": "123.45"}
    assert order["unit"]["custom_id"] == order["unit"]["invoice_id"] == f"{PREFIX}-payment-41"
    assert order["experience"] == {
        "user_action": "PAY_NOW",
        "shipping_preference": "NO_SHIPPING",
        "return_url": RETURN_URL,
        "cancel_url": CANCEL_URL,
    }
    create_call = next(c for c in double.calls if c.operation == "orders.create")
    assert create_call.request_id == f"{PREFIX}-payment-41-create"

    # Executed before the payer approved: PayPal's ORDER_NOT_APPROVED, with its debug id.
    with pytest.raises(ProviderError) as not_approved:
        await provider.confirm_hold(
            provider_payment_id=order_id, payer_id=None, idempotency_key="payment-41-execute"
        )
    assert not_approved.value.code == "ORDER_NOT_APPROVED"
    assert not isinstance(not_approved.value, PaymentDeclinedError)
    assert isinstance(not_approved.value, PayPalError)
    assert not_approved.value.debug_id == double.debug_ids[-1]
    assert double.debug_ids[-1] in not_approved.value.message

    double.approve(order_id)
    assert (await provider.get_hold(HoldRef(order_id))).state is HoldState.REQUIRES_ACTION
    # The same key again after the refusal: the approval counts.
    held = await provider.confirm_hold(
        provider_payment_id=order_id, payer_id="QYR5Z8XDVJNXQ", idempotency_key="payment-41-execute"
    )
    assert held.state is HoldState.AUTHORIZED
    assert held.amount == 12345
    auth = double.authorizations[held.authorization_id or ""]
    assert held.capture_by == auth["expiration_time"].replace(microsecond=0)
    assert timedelta(days=28, hours=23) < held.capture_by - datetime.now(UTC) <= timedelta(days=29)

    ref = HoldRef(order_id, held.authorization_id)
    assert (await provider.get_hold(ref)).state is HoldState.AUTHORIZED

    captured = await provider.capture(
        ref=ref, amount=12345, currency="USD", idempotency_key="payment-41-capture"
    )
    assert captured.amount == 12345
    assert double.captures[captured.capture_id]["amount"] == 12345
    assert double.captures[captured.capture_id]["final_capture"] is True
    assert auth["status"] == "CAPTURED"

    ref = HoldRef(order_id, held.authorization_id, captured.capture_id)
    partial = await provider.refund(
        ref=ref, amount=2345, currency="USD", idempotency_key="payment-41-refund-1"
    )
    assert partial.amount == 2345
    after_partial = await provider.get_hold(ref)
    assert after_partial.state is HoldState.CAPTURED
    assert (after_partial.captured_amount, after_partial.refunded_amount) == (12345, 2345)
    assert double.captures[captured.capture_id]["status"] == "PARTIALLY_REFUNDED"

    rest = await provider.refund(
        ref=ref, amount=10000, currency="USD", idempotency_key="payment-41-refund-2"
    )
    assert rest.amount == 10000
    assert double.captures[captured.capture_id]["status"] == "REFUNDED"
    assert (await provider.get_hold(ref)).refunded_amount == 12345
    with pytest.raises(ProviderError) as exhausted:
        await provider.refund(
            ref=ref, amount=1, currency="USD", idempotency_key="payment-41-refund-3"
        )
    assert exhausted.value.code == "CAPTURE_FULLY_REFUNDED"

    assert_spec_checked(
        double,
        "oauth.token",
        "orders.create",
        "orders.get",
        "orders.authorize",
        "authorizations.capture",
        "captures.refund",
    )
    assert double.tokens_issued == 1 == provider.token_fetches  # one token for the whole flow


async def test_execute_retried_after_approval_when_paypal_replays_the_refusal(
    paypal_specs: SpecValidator,
) -> None:
    """If PayPal answers a reused request id with its first refusal (ORDER_NOT_APPROVED)
    even after the payer approved, the adapter looks at the order and authorises it under a
    derived key, once."""
    for double in iter_paypal_double(paypal_specs, remember_failures=True):
        adapter = PayPalProvider(settings_for(double))
        try:
            hold = await adapter.create_hold(
                NewHold(
                    payment_id=49,
                    booking_id=9,
                    amount=990,
                    currency="USD",
                    return_url=RETURN_URL,
                    cancel_url=CANCEL_URL,
                ),
                idempotency_key="payment-49-create",
            )
            with pytest.raises(ProviderError):
                await adapter.confirm_hold(
                    provider_payment_id=hold.provider_payment_id,
                    payer_id=None,
                    idempotency_key="payment-49-execute",
                )
            double.approve(hold.provider_payment_id)
            held = await adapter.confirm_hold(
                provider_payment_id=hold.provider_payment_id,
                payer_id=None,
                idempotency_key="payment-49-execute",
            )
            assert held.state is HoldState.AUTHORIZED and held.amount == 990
            again = await adapter.confirm_hold(
                provider_payment_id=hold.provider_payment_id,
                payer_id=None,
                idempotency_key="payment-49-execute",
            )
            assert again.authorization_id == held.authorization_id
            assert len(double.authorizations) == 1
            keys = [c.request_id for c in double.calls if c.operation == "orders.authorize"]
            assert keys[:3] == [
                f"{PREFIX}-payment-49-execute",
                f"{PREFIX}-payment-49-execute",
                f"{PREFIX}-payment-49-execute-approved",
            ]
        finally:
            await adapter.aclose()
        assert_spec_checked(double, "orders.authorize", "orders.get")


async def test_capture_less_than_authorised_releases_the_rest(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    ref = await authorized_hold(provider, double, 42, 10000)
    captured = await provider.capture(
        ref=ref, amount=7550, currency="USD", idempotency_key="payment-42-capture"
    )
    assert captured.amount == 7550
    auth = double.authorizations[ref.authorization_id or ""]
    # final_capture: the remaining 24.50 is released to the payer at once.
    assert auth["status"] == "CAPTURED" and auth["captured"] == 7550
    hold = await provider.get_hold(ref)
    assert (hold.state, hold.amount, hold.captured_amount) == (HoldState.CAPTURED, 10000, 7550)

    # A capture retried under another key finds the capture already made.
    again = await provider.capture(
        ref=ref, amount=7550, currency="USD", idempotency_key="payment-42-capture-b"
    )
    assert again == captured
    assert len(double.captures) == 1
    assert_spec_checked(double, "authorizations.capture", "orders.get")


async def test_void_and_capture_after_void(provider: PayPalProvider, double: PayPalDouble) -> None:
    ref = await authorized_hold(provider, double, 43, 5000)
    await provider.cancel(ref=ref, idempotency_key="payment-43-void")
    assert double.authorizations[ref.authorization_id or ""]["status"] == "VOIDED"
    # Voiding twice (a retry under another key) is not an error.
    await provider.cancel(ref=ref, idempotency_key="payment-43-void-b")
    hold = await provider.get_hold(ref)
    assert hold.state is HoldState.CANCELED
    with pytest.raises(ProviderError) as voided:
        await provider.capture(ref=ref, amount=5000, currency="USD", idempotency_key="payment-43-c")
    assert voided.value.code == "AUTHORIZATION_VOIDED"

    # An order never authorised has nothing to void: cancel is a no-op.
    unapproved = await provider.create_hold(
        NewHold(
            payment_id=44,
            booking_id=1,
            amount=100,
            currency="USD",
        ),
        idempotency_key="payment-44-create",
    )
    await provider.cancel(
        ref=HoldRef(unapproved.provider_payment_id), idempotency_key="payment-44-void"
    )
    # Without an authorisation id, cancel finds the order's authorisation itself.
    other = await authorized_hold(provider, double, 45, 700)
    await provider.cancel(ref=HoldRef(other.provider_payment_id), idempotency_key="payment-45-void")
    assert double.authorizations[other.authorization_id or ""]["status"] == "VOIDED"
    assert_spec_checked(double, "authorizations.void", "authorizations.capture")


async def test_reauthorize_after_the_honour_period(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    ref = await authorized_hold(provider, double, 46, 8800)
    original = double.authorizations[ref.authorization_id or ""]
    double.advance(days=4)
    renewed = await provider.reauthorize(
        ref=ref, amount=8800, currency="USD", idempotency_key="payment-46-reauthorize"
    )
    assert renewed.state is HoldState.AUTHORIZED
    assert renewed.provider_payment_id == ref.provider_payment_id
    assert renewed.authorization_id not in (None, ref.authorization_id)
    assert renewed.amount == 8800
    assert renewed.capture_by == original["expiration_time"].replace(microsecond=0)
    # get_hold with the new id reports it, even though the order lists both.
    new_ref = HoldRef(ref.provider_payment_id, renewed.authorization_id)
    assert (await provider.get_hold(new_ref)).authorization_id == renewed.authorization_id
    captured = await provider.capture(
        ref=new_ref, amount=8800, currency="USD", idempotency_key="payment-46-capture"
    )
    assert captured.amount == 8800
    assert double.captures[captured.capture_id]["authorization_id"] == renewed.authorization_id

    # Past day 29 the authorisation is gone: PayPal's AUTHORIZATION_EXPIRED.
    late = await authorized_hold(provider, double, 47, 100)
    double.advance(days=30)
    with pytest.raises(ProviderError) as expired:
        await provider.capture(ref=late, amount=100, currency="USD", idempotency_key="p-47-c")
    assert expired.value.code == "AUTHORIZATION_EXPIRED"
    assert_spec_checked(double, "authorizations.reauthorize", "authorizations.capture")


async def test_zero_decimal_and_whole_unit_currencies(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    assert paypal_value(1500, "JPY") == "1500"
    assert paypal_value(12300, "HUF") == "123"
    with pytest.raises(PayPalError) as fractional:
        paypal_value(12350, "HUF")
    assert fractional.value.code == "DECIMALS_NOT_SUPPORTED"
    ref = await authorized_hold(provider, double, 48, 1500, "JPY")
    assert double.orders[ref.provider_payment_id]["unit"]["amount"] == {
        "currency_code": "JPY",
        "value": "1500",
    }
    captured = await provider.capture(ref=ref, amount=1500, currency="JPY", idempotency_key="k48")
    assert captured.amount == 1500
    assert_spec_checked(double, "orders.create", "authorizations.capture")


# --------------------------------------------------------------------------- idempotency


async def test_same_request_id_acts_once(provider: PayPalProvider, double: PayPalDouble) -> None:
    first = await provider.create_hold(
        NewHold(
            payment_id=50,
            booking_id=5,
            amount=2000,
            currency="USD",
            return_url=RETURN_URL,
            cancel_url=CANCEL_URL,
        ),
        idempotency_key="payment-50-create",
    )
    again = await provider.create_hold(
        NewHold(
            payment_id=50,
            booking_id=5,
            amount=2000,
            currency="USD",
            return_url=RETURN_URL,
            cancel_url=CANCEL_URL,
        ),
        idempotency_key="payment-50-create",
    )
    assert again.provider_payment_id == first.provider_payment_id
    assert len(double.orders) == 1
    replays = [c for c in double.calls if c.operation == "orders.create"]
    assert [c.replayed for c in replays] == [False, True]
    assert replays[1].status == 200  # PayPal answers a replayed create with 200

    double.approve(first.provider_payment_id)
    ref = HoldRef(first.provider_payment_id)
    # The capture acts, then its answer is lost: the outcome is unknown to us...
    held = await provider.confirm_hold(
        provider_payment_id=ref.provider_payment_id, payer_id=None, idempotency_key="payment-50-x"
    )
    ref = HoldRef(ref.provider_payment_id, held.authorization_id)
    double.fail_next("authorizations.capture", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await provider.capture(ref=ref, amount=2000, currency="USD", idempotency_key="payment-50-c")
    assert len(double.captures) == 1
    # ...and asking again with the same key answers the same capture, taking nothing more.
    captured = await provider.capture(
        ref=ref, amount=2000, currency="USD", idempotency_key="payment-50-c"
    )
    assert list(double.captures) == [captured.capture_id]
    assert captured.amount == 2000

    # A refund answered 500 after acting: the retry answers the same refund.
    double.fail_next("captures.refund", "500_after")
    ref = HoldRef(ref.provider_payment_id, ref.authorization_id, captured.capture_id)
    with pytest.raises(ProviderUnavailableError):
        await provider.refund(ref=ref, amount=500, currency="USD", idempotency_key="payment-50-r1")
    refund = await provider.refund(
        ref=ref, amount=500, currency="USD", idempotency_key="payment-50-r1"
    )
    assert list(double.refunds) == [refund.refund_id] and refund.amount == 500
    assert double.captures[captured.capture_id]["refunded"] == 500

    # An authorisation made under another key (an earlier answer lost): confirm_hold
    # answers the existing authorisation instead of failing.
    again_held = await provider.confirm_hold(
        provider_payment_id=ref.provider_payment_id, payer_id=None, idempotency_key="other-key"
    )
    assert again_held.authorization_id == held.authorization_id
    assert again_held.state is HoldState.CAPTURED
    assert len(double.authorizations) == 1
    assert_spec_checked(double, "orders.create", "authorizations.capture", "captures.refund")


# --------------------------------------------------------------------------- OAuth2


async def test_token_is_cached_and_renewed_once_on_401(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    hold = await provider.create_hold(
        NewHold(
            payment_id=60,
            booking_id=6,
            amount=100,
            currency="USD",
        ),
        idempotency_key="payment-60-create",
    )
    ref = HoldRef(hold.provider_payment_id)
    for _ in range(3):
        await provider.get_hold(ref)
    assert double.tokens_issued == 1
    token_calls = [c for c in double.calls if c.operation == "oauth.token"]
    assert len(token_calls) == 1

    # PayPal revokes the token; a burst of concurrent calls gets 401s and refreshes once.
    double.revoke_tokens()
    holds = await asyncio.gather(*(provider.get_hold(ref) for _ in range(5)))
    assert {h.provider_payment_id for h in holds} == {ref.provider_payment_id}
    assert double.tokens_issued == 2
    assert sum(1 for c in double.calls if c.status == 401) == 5

    # Shortly before expiry the token is renewed before use (no 401 round trip).
    renew_at = provider.client._token_renew_at
    assert 32400 - 300 - 5 < renew_at - time.monotonic() <= 32400 - 300
    provider.client._token_renew_at = 0.0
    await provider.get_hold(ref)
    assert double.tokens_issued == 3
    assert sum(1 for c in double.calls if c.status == 401) == 5
    assert_spec_checked(double, "orders.get")


async def test_bad_client_credentials(double: PayPalDouble) -> None:
    adapter = PayPalProvider(settings_for(double, paypal_client_secret="wrong"))
    try:
        with pytest.raises(PayPalError) as refused:
            await adapter.get_hold(HoldRef("5O190127TN364715T"))
    finally:
        await adapter.aclose()
    assert refused.value.code == "invalid_client"
    assert double.tokens_issued == 0
    assert [c.operation for c in double.calls] == ["oauth.token"]  # no API call without a token


# --------------------------------------------------------------------------- errors


async def test_error_bodies_are_mapped_with_their_debug_id(
    provider: PayPalProvider, double: PayPalDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handwork_payments.providers.paypal")
    with pytest.raises(ProviderError) as missing:
        await provider.get_hold(HoldRef("NOSUCHORDER00001"))
    assert missing.value.code == "INVALID_RESOURCE_ID"
    debug_id = double.debug_ids[-1]
    assert isinstance(missing.value, PayPalError) and missing.value.debug_id == debug_id
    assert "RESOURCE_NOT_FOUND" in missing.value.message and debug_id in missing.value.message
    assert any(debug_id in r.getMessage() for r in caplog.records)

    # A payer whose funding PayPal refuses: a decline (402 for our API), not a fault.
    hold = await provider.create_hold(
        NewHold(
            payment_id=70,
            booking_id=7,
            amount=3000,
            currency="USD",
            return_url=RETURN_URL,
            cancel_url=CANCEL_URL,
        ),
        idempotency_key="payment-70-create",
    )
    double.approve(hold.provider_payment_id, decline="PAYER_CANNOT_PAY")
    with pytest.raises(PaymentDeclinedError) as declined:
        await provider.confirm_hold(
            provider_payment_id=hold.provider_payment_id,
            payer_id=None,
            idempotency_key="payment-70-execute",
        )
    assert declined.value.code == "PAYER_CANNOT_PAY"

    # 5xx, timeouts: the outcome is unknown.
    double.fail_next("orders.get", "500_before")
    with pytest.raises(ProviderUnavailableError) as server_error:
        await provider.get_hold(HoldRef(hold.provider_payment_id))
    assert double.debug_ids[-1] in str(server_error.value)
    double.fail_next("orders.get", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await provider.get_hold(HoldRef(hold.provider_payment_id))

    # 429s are retried with a bounded backoff...
    double.fail_next("orders.get", "429", times=2)
    assert (await provider.get_hold(HoldRef(hold.provider_payment_id))).amount == 3000
    # ...and past the bound it is "try again later".
    double.fail_next("orders.get", "429", times=4)
    with pytest.raises(ProviderUnavailableError):
        await provider.get_hold(HoldRef(hold.provider_payment_id))
    assert sum(1 for c in double.calls if c.status == 429) == 6
    assert_spec_checked(double, "orders.get", "orders.authorize")


async def test_error_mapping_of_bodies_the_double_does_not_send(double: PayPalDouble) -> None:
    adapter = PayPalProvider(settings_for(double))
    try:
        declined = adapter.client._error(
            "POST",
            "/v2/checkout/orders/X/capture",
            httpx.Response(
                422,
                json={
                    "name": "UNPROCESSABLE_ENTITY",
                    "message": "The requested action could not be performed.",
                    "debug_id": "f1e2d3c4b5a69",
                    "details": [
                        {
                            "issue": "INSTRUMENT_DECLINED",
                            "description": "The instrument was declined.",
                        }
                    ],
                },
            ),
        )
        assert isinstance(declined, PayPalDeclinedError) and isinstance(declined, PayPalError)
        assert declined.code == "INSTRUMENT_DECLINED" and declined.debug_id == "f1e2d3c4b5a69"
        assert "INSTRUMENT_DECLINED: The instrument was declined." in declined.message
        nameless = adapter.client._error(
            "GET", "/x", httpx.Response(403, text="<html>forbidden</html>")
        )
        assert isinstance(nameless, PayPalError) and nameless.code == "HTTP_403"
        assert isinstance(
            adapter.client._error("GET", "/x", httpx.Response(503)), ProviderUnavailableError
        )
    finally:
        await adapter.aclose()


async def test_unreachable_paypal_is_unavailable() -> None:
    with socketless_port() as port:
        adapter = PayPalProvider(
            Settings(  # type: ignore[call-arg]
                _env_file=None,
                paypal_client_id="id",
                paypal_client_secret="secret",
                paypal_api_base=f"http://127.0.0.1:{port}",
                provider_timeout_seconds=CLIENT_TIMEOUT_SECONDS,
            ),
            ids=IDS,
        )
        try:
            with pytest.raises(ProviderUnavailableError):
                await adapter.get_hold(HoldRef("ANY"))
        finally:
            await adapter.aclose()


class socketless_port:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        sock.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        return None


# --------------------------------------------------------------------------- payouts


def test_payout_status_mapping() -> None:
    assert transfer_state("SUCCESS") is TransferState.SUCCEEDED
    for failed in ("FAILED", "RETURNED", "BLOCKED", "REFUNDED", "REVERSED", "DENIED", "CANCELED"):
        assert transfer_state(failed) is TransferState.FAILED, failed
    for pending in ("PENDING", "UNCLAIMED", "ONHOLD", "NEW", "SOMETHING_NEW", None):
        assert transfer_state(pending) is TransferState.PENDING, pending


async def test_single_payout(provider: PayPalProvider, double: PayPalDouble) -> None:
    order = PayoutOrder(payout_id=7, destination="worker@example.com", amount=2500, currency="USD")
    sent = await provider.send_payout(order)
    assert sent.state is TransferState.PENDING
    assert sent.amount == 2500 and sent.currency == "USD"
    assert sent.transfer_id in double.items and sent.batch_id in double.batches
    batch = double.batches[sent.batch_id or ""]
    assert batch["sender_batch_header"]["sender_batch_id"] == f"{PREFIX}-payout-7"
    item = double.items[sent.transfer_id]
    assert item["payout_item"]["sender_item_id"] == f"{PREFIX}-payout-7"
    assert item["payout_item"]["receiver"] == "worker@example.com"
    assert (item["amount"], item["currency"]) == (2500, "USD")
    post = next(c for c in double.calls if c.operation == "payouts.create")
    assert post.request_id == f"{PREFIX}-payout-7"

    double.process_payouts()
    [polled] = await provider.get_payout_batch(sent.batch_id or "")
    assert (polled.transfer_id, polled.state, polled.amount) == (
        sent.transfer_id,
        TransferState.SUCCEEDED,
        2500,
    )
    assert (await provider.get_payout_item(sent.transfer_id)).state is TransferState.SUCCEEDED
    # Sending it again (a retry) pays nothing more: same batch, same item.
    assert (await provider.send_payout(order)).transfer_id == sent.transfer_id
    assert len(double.batches) == 1 and len(double.items) == 1
    assert_spec_checked(double, "payouts.create", "payouts.get", "payouts_item.get")


async def test_batched_payouts_and_their_statuses(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    orders = [
        PayoutOrder(101, "paid@example.com", 1000, "USD"),
        PayoutOrder(102, "locked+fail@example.com", 2000, "USD"),
        PayoutOrder(103, "newcomer+unclaimed@example.com", 3000, "USD"),
        PayoutOrder(104, "refuser+returned@example.com", 4000, "USD"),
        PayoutOrder(105, "euro@example.com", 550, "EUR"),
    ]
    sent = await provider.send_payout_batch(orders, batch_key="payout-batch-9")
    assert [t.state for t in sent] == [TransferState.PENDING] * 5
    assert [t.amount for t in sent] == [1000, 2000, 3000, 4000, 550]
    assert len({t.batch_id for t in sent}) == 1 and len(double.batches) == 1
    batch = double.batches[sent[0].batch_id or ""]
    assert batch["sender_batch_header"]["sender_batch_id"] == f"{PREFIX}-payout-batch-9"
    senders = [double.items[t.transfer_id]["payout_item"]["sender_item_id"] for t in sent]
    assert senders == [
        f"{PREFIX}-{s}"
        for s in ("payout-101", "payout-102", "payout-103", "payout-104", "payout-105")
    ]

    double.process_payouts()
    polled = {t.transfer_id: t for t in await provider.get_payout_batch(sent[0].batch_id or "")}
    states = [polled[t.transfer_id].state for t in sent]
    assert states == [
        TransferState.SUCCEEDED,
        TransferState.FAILED,
        TransferState.PENDING,  # unclaimed: the receiver still has 30 days to claim
        TransferState.FAILED,
        TransferState.SUCCEEDED,
    ]
    assert "RECEIVER_ACCOUNT_LOCKED" in (polled[sent[1].transfer_id].failure_reason or "")
    assert (polled[sent[3].transfer_id].failure_reason or "").startswith("RETURNED")
    assert polled[sent[2].transfer_id].failure_reason is None
    # The claim window closes: PayPal returns the money, the payout fails.
    double.set_payout_status(sent[2].transfer_id, "RETURNED")
    assert (await provider.get_payout_item(sent[2].transfer_id)).state is TransferState.FAILED

    # The whole batch again under its key: the first batch, nothing paid twice...
    again = await provider.send_payout_batch(orders, batch_key="payout-batch-9")
    assert [t.transfer_id for t in again] == [t.transfer_id for t in sent]
    # ...even once PayPal has forgotten the request id: sender_batch_id is refused as a
    # duplicate, with a link to the original batch.
    double.forget_request_ids()
    again = await provider.send_payout_batch(orders, batch_key="payout-batch-9")
    assert [t.transfer_id for t in again] == [t.transfer_id for t in sent]
    assert [c.status for c in double.calls if c.operation == "payouts.create"] == [201, 201, 400]
    assert len(double.batches) == 1 and len(double.items) == 5
    assert_spec_checked(double, "payouts.create", "payouts.get", "payouts_item.get")


async def test_find_payout_after_a_lost_answer(
    provider: PayPalProvider, double: PayPalDouble
) -> None:
    order = PayoutOrder(payout_id=8, destination="worker8@example.com", amount=4321, currency="USD")
    double.fail_next("payouts.create", "timeout_after")
    with pytest.raises(ProviderUnavailableError):
        await provider.send_payout(order)
    assert len(double.batches) == 1  # PayPal acted; we do not know it

    found = await provider.find_payout(order)
    assert found is not None and found.amount == 4321 and found.state is TransferState.PENDING
    assert found.transfer_id in double.items
    assert len(double.batches) == 1 and len(double.items) == 1
    posts = [c for c in double.calls if c.operation == "payouts.create"]
    assert [(c.request_id, c.replayed) for c in posts] == [
        (f"{PREFIX}-payout-8", False),
        (f"{PREFIX}-payout-8", True),
    ]

    # Past PayPal's request-id memory, the duplicate sender_batch_id still finds it.
    double.forget_request_ids()
    assert (await provider.find_payout(order)) == found
    # With the batch id known it is a pure look-up; a payout not in it is None.
    assert (await provider.find_payout(order, batch_id=found.batch_id)) == found
    stranger = PayoutOrder(payout_id=9, destination="x@example.com", amount=1, currency="USD")
    assert await provider.find_payout(stranger, batch_id=found.batch_id) is None
    assert len(double.batches) == 1 and len(double.items) == 1
    assert_spec_checked(double, "payouts.create", "payouts.get")


# --------------------------------------------------------------------------- webhooks


async def test_webhooks_verified_through_the_api(
    provider: PayPalProvider, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    ref = await authorized_hold(provider, double, 80, 6000)
    order_id = ref.provider_payment_id
    headers, body = double.deliver(
        "PAYMENT.AUTHORIZATION.CREATED", double.authorization_resource(ref.authorization_id or "")
    )
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id, event.amount) == (
        EventKind.HOLD_AUTHORIZED,
        order_id,
        6000,
    )
    assert event.provider == "paypal" and event.event_type == "PAYMENT.AUTHORIZATION.CREATED"

    captured = await provider.capture(ref=ref, amount=6000, currency="USD", idempotency_key="c80")
    headers, body = double.deliver(
        "PAYMENT.CAPTURE.COMPLETED", double.capture_resource(captured.capture_id)
    )
    event = await provider.parse_event({k.lower(): v for k, v in headers.items()}, body)
    assert (event.kind, event.object_id, event.amount) == (EventKind.CAPTURED, order_id, 6000)

    # A refund names its capture, not the order: the adapter asks PayPal for the capture.
    ref = HoldRef(order_id, ref.authorization_id, captured.capture_id)
    first = await provider.refund(ref=ref, amount=1000, currency="USD", idempotency_key="r80-1")
    second = await provider.refund(ref=ref, amount=1500, currency="USD", idempotency_key="r80-2")
    gets_before = sum(1 for c in double.calls if c.operation == "captures.get")
    headers, body = double.deliver(
        "PAYMENT.CAPTURE.REFUNDED", double.refund_resource(second.refund_id)
    )
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id) == (EventKind.REFUNDED, order_id)
    assert event.amount == 2500  # cumulative, as Stripe's amount_refunded
    assert sum(1 for c in double.calls if c.operation == "captures.get") == gets_before + 1
    assert first.amount == 1000
    # Processing a stored delivery again translates it without another verification.
    verifies = sum(1 for c in double.calls if c.operation == "webhooks.verify")
    assert await provider.translate_event(body) == event
    assert sum(1 for c in double.calls if c.operation == "webhooks.verify") == verifies

    # A chargeback: the dispute names the capture as the seller's transaction.
    dispute = {
        "dispute_id": "PP-D-27803",
        "create_time": "2026-01-05T10:00:00Z",
        "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        "status": "OPEN",
        "dispute_amount": {"currency_code": "USD", "value": "35.00"},
        "disputed_transactions": [
            {
                "seller_transaction_id": captured.capture_id,
                "invoice_number": "payment-80",
                "custom": "payment-80",
            }
        ],
    }
    assert paypal_specs.validate_schema("disputes", "dispute", dispute) == []
    headers, body = double.deliver("CUSTOMER.DISPUTE.CREATED", dispute)
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id, event.dispute_id, event.amount) == (
        EventKind.DISPUTE_OPENED,
        order_id,
        "PP-D-27803",
        3500,
    )
    resolved = {
        **dispute,
        "status": "RESOLVED",
        "dispute_outcome": {"outcome_code": "RESOLVED_SELLER_FAVOUR"},
    }
    assert paypal_specs.validate_schema("disputes", "dispute", resolved) == []
    headers, body = double.deliver("CUSTOMER.DISPUTE.RESOLVED", resolved)
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id, event.dispute_outcome) == (
        EventKind.DISPUTE_CLOSED,
        order_id,
        ChargebackOutcome.WON,
    )

    # An authorisation delivered without supplementary_data: the adapter asks for it.
    bare = double.authorization_resource(ref.authorization_id or "")
    del bare["supplementary_data"]
    headers, body = double.deliver("PAYMENT.AUTHORIZATION.VOIDED", bare)
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id) == (EventKind.HOLD_CANCELED, order_id)
    # One about a capture PayPal does not know: recorded against no object, not an error.
    headers, body = double.deliver(
        "PAYMENT.CAPTURE.REFUNDED",
        {
            "id": "UNKNOWNREFUND01",
            "amount": {"currency_code": "USD", "value": "1.00"},
            "links": [{"rel": "up", "href": f"{double.url}/v2/payments/captures/NOSUCHCAPTURE1"}],
        },
    )
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id, event.amount) == (EventKind.REFUNDED, None, 100)

    # Payout items are named by their payout_item_id.
    sent = await provider.send_payout(PayoutOrder(81, "w81@example.com", 900, "USD"))
    double.process_payouts()
    headers, body = double.deliver(
        "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", double.payout_item_resource(sent.transfer_id)
    )
    event = await provider.parse_event(headers, body)
    assert (event.kind, event.object_id, event.amount) == (
        EventKind.PAYOUT_SUCCEEDED,
        sent.transfer_id,
        900,
    )

    # Tampered body, another webhook id, missing headers: not from PayPal.
    headers, body = double.deliver(
        "PAYMENT.CAPTURE.COMPLETED", double.capture_resource(captured.capture_id)
    )
    with pytest.raises(InvalidSignatureError):
        await provider.parse_event(headers, body.replace(b"60.00", b"6000.00"))
    other = PayPalProvider(settings_for(double, paypal_webhook_id="WH0THER0000000"))
    try:
        with pytest.raises(InvalidSignatureError):
            await other.parse_event(headers, body)
    finally:
        await other.aclose()
    with pytest.raises(InvalidSignatureError):
        await provider.parse_event({"PAYPAL-TRANSMISSION-ID": "x"}, body)
    with pytest.raises(InvalidSignatureError):
        await provider.parse_event(headers, b"not json")
    verdicts = [c.status for c in double.calls if c.operation == "webhooks.verify"]
    assert verdicts and set(verdicts) == {200}
    assert_spec_checked(double, "webhooks.verify", "captures.get", "authorizations.get")


# --------------------------------------------------------------------------- offline check


def throwaway_certificate(
    *, valid_days: int = 30, expired: bool = False
) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.test")])
    now = datetime.now(UTC)
    start = now - timedelta(days=60) if expired else now - timedelta(days=1)
    end = now - timedelta(days=1) if expired else now + timedelta(days=valid_days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def signed_headers(
    key: rsa.RSAPrivateKey, body: bytes, webhook_id: str, cert_url: str
) -> dict[str, str]:
    transmission_id = "69cd13f0-d67a-11e5-baa3-778b53f4ae55"
    transmission_time = "2026-02-18T20:01:35Z"
    message = paypal_events.signed_message(transmission_id, transmission_time, webhook_id, body)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": transmission_time,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


PAYPAL_CERT = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
WEBHOOK_ID = "1JE4291016473214C"


async def test_offline_verification_with_a_throwaway_certificate() -> None:
    key, pem = throwaway_certificate()
    fetched: list[str] = []

    async def fetch(url: str) -> bytes:
        fetched.append(url)
        return pem

    body = b'{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED","resource":{"id":"CAP1"}}'
    headers = signed_headers(key, body, WEBHOOK_ID, PAYPAL_CERT)
    await paypal_events.verify_offline(headers, body, WEBHOOK_ID, fetch)
    assert fetched == [PAYPAL_CERT]
    lowered = {k.lower(): v for k, v in headers.items()}
    await paypal_events.verify_offline(lowered, body, WEBHOOK_ID, fetch)

    with pytest.raises(InvalidSignatureError):  # a tampered body
        await paypal_events.verify_offline(
            headers, body.replace(b"CAP1", b"CAP2"), WEBHOOK_ID, fetch
        )
    with pytest.raises(InvalidSignatureError):  # signed for another webhook
        await paypal_events.verify_offline(headers, body, "9XL90610J3647323C", fetch)
    with pytest.raises(InvalidSignatureError):  # another key behind the same URL
        other_key, _ = throwaway_certificate()
        await paypal_events.verify_offline(
            signed_headers(other_key, body, WEBHOOK_ID, PAYPAL_CERT), body, WEBHOOK_ID, fetch
        )
    with pytest.raises(InvalidSignatureError):  # an unsupported algorithm
        await paypal_events.verify_offline(
            {**headers, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}, body, WEBHOOK_ID, fetch
        )
    with pytest.raises(InvalidSignatureError):  # a signature that is not base64
        await paypal_events.verify_offline(
            {**headers, "PAYPAL-TRANSMISSION-SIG": "%%%"}, body, WEBHOOK_ID, fetch
        )
    with pytest.raises(InvalidSignatureError):  # no webhook id configured
        await paypal_events.verify_offline(headers, body, "", fetch)

    _, expired_pem = throwaway_certificate(expired=True)

    async def fetch_expired(url: str) -> bytes:
        return expired_pem

    with pytest.raises(InvalidSignatureError):
        await paypal_events.verify_offline(headers, body, WEBHOOK_ID, fetch_expired)

    # Non-PayPal certificate URLs are refused before anything is downloaded.
    fetched.clear()
    for url in (
        "https://paypal.com.evil.com/cert",
        "https://evilpaypal.com/cert",
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@evil.com/cert",
        "https://evil.com\\@api.paypal.com/cert",
        "https://api.paypal.com:8443/cert",
        "ftp://api.paypal.com/cert",
        "https://api.paypal.com.:443/cert",
        "//api.paypal.com/cert",
    ):
        with pytest.raises(InvalidSignatureError):
            await paypal_events.verify_offline(
                signed_headers(key, body, WEBHOOK_ID, url), body, WEBHOOK_ID, fetch
            )
    assert fetched == []
    for good in (
        "https://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://api-m.sandbox.paypal.com/x",
        "https://API.PayPal.com:443/x",
    ):
        assert paypal_events.is_paypal_cert_url(good), good


async def test_offline_mode_through_the_adapter(double: PayPalDouble) -> None:
    fetched: list[str] = []

    async def fetch(url: str) -> bytes:
        fetched.append(url)
        return double.cert_pem

    adapter = PayPalProvider(
        settings_for(double, paypal_webhook_verification="offline"), fetch_cert=fetch
    )
    try:
        resource = {
            "payout_item_id": "8AELMXH8UB2P8",
            "transaction_status": "FAILED",
            "payout_batch_id": "Q8KVJG9TZTNN4",
            "payout_item": {
                "receiver": "w@example.com",
                "amount": {"currency": "USD", "value": "12.00"},
                "sender_item_id": f"{PREFIX}-payout-3",
            },
            "errors": {"name": "RECEIVER_ACCOUNT_LOCKED", "message": "Receiver account is locked"},
        }
        headers, body = double.deliver("PAYMENT.PAYOUTS-ITEM.FAILED", resource)
        event = await adapter.parse_event(headers, body)
        assert (event.kind, event.object_id, event.amount) == (
            EventKind.PAYOUT_FAILED,
            "8AELMXH8UB2P8",
            1200,
        )
        assert "RECEIVER_ACCOUNT_LOCKED" in (event.failure_message or "")
        assert fetched == [headers["PAYPAL-CERT-URL"]]
        with pytest.raises(InvalidSignatureError):
            await adapter.parse_event(headers, body.replace(b"12.00", b"99.00"))
        # No verify-webhook-signature call in offline mode, and no token needed for it.
        assert [c.operation for c in double.calls] == []
    finally:
        await adapter.aclose()

    # The adapter's own downloader refuses anything that is not paypal.com, offline.
    real = PayPalProvider(settings_for(double))
    try:
        with pytest.raises(InvalidSignatureError):
            await real._fetch_cert("https://paypal.com.evil.com/cert.pem")
    finally:
        await real.aclose()


# --------------------------------------------------------------------------- translation


def event(event_type: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"id": "WH-" + secrets.token_hex(6), "event_type": event_type, "resource": resource}


def test_translation_of_each_handled_event() -> None:
    related = {
        "supplementary_data": {"related_ids": {"order_id": "ORDER1", "authorization_id": "A1"}}
    }
    money = {"currency_code": "USD", "value": "10.50"}
    approved = paypal_events.translate(
        event("CHECKOUT.ORDER.APPROVED", {"id": "ORDER1", "purchase_units": [{"amount": money}]})
    )
    assert (approved.kind, approved.object_id, approved.amount) == (
        EventKind.IGNORED,
        "ORDER1",
        1050,
    )
    for event_type, kind in (
        ("PAYMENT.AUTHORIZATION.CREATED", EventKind.HOLD_AUTHORIZED),
        ("PAYMENT.AUTHORIZATION.VOIDED", EventKind.HOLD_CANCELED),
        ("PAYMENT.CAPTURE.COMPLETED", EventKind.CAPTURED),
        ("PAYMENT.CAPTURE.DENIED", EventKind.HOLD_FAILED),
    ):
        translated = paypal_events.translate(
            event(event_type, {"id": "X1", "amount": money, **related})
        )
        assert (translated.kind, translated.object_id, translated.amount) == (kind, "ORDER1", 1050)
    denied = paypal_events.translate(
        event(
            "PAYMENT.CAPTURE.DENIED",
            {"id": "C", "status": "DECLINED", "status_details": {"reason": "RISK"}},
        )
    )
    assert denied.failure_message == "capture declined: RISK" and denied.object_id is None

    reversal = {
        "id": "R1",
        "amount": {"currency_code": "USD", "value": "-7.25"},
        "links": [{"rel": "up", "href": "https://api.paypal.com/v2/payments/captures/CAP9"}],
    }
    reversed_event = event("PAYMENT.CAPTURE.REVERSED", reversal)
    translated = paypal_events.translate(reversed_event)
    assert (translated.kind, translated.amount, translated.object_id) == (
        EventKind.REFUNDED,
        725,
        None,
    )
    assert paypal_events.lookup_hint(reversed_event) == ("capture", "CAP9")

    won, lost, unknown = ChargebackOutcome.WON, ChargebackOutcome.LOST, ChargebackOutcome.UNKNOWN
    outcomes = {
        "RESOLVED_SELLER_FAVOUR": won,
        "RESOLVED_WITH_PAYOUT": won,
        "CANCELED_BY_BUYER": won,
        "DENIED": won,
        "RESOLVED_BUYER_FAVOUR": lost,
        "ACCEPTED": lost,
        "NONE": unknown,
    }
    for code, outcome in outcomes.items():
        resolved = paypal_events.translate(
            event(
                "CUSTOMER.DISPUTE.RESOLVED",
                {"dispute_id": "PP-D-1", "dispute_outcome": {"outcome_code": code}},
            )
        )
        assert (resolved.kind, resolved.dispute_outcome) == (EventKind.DISPUTE_CLOSED, outcome)
    opened = paypal_events.translate(event("CUSTOMER.DISPUTE.CREATED", {"dispute_id": "PP-D-2"}))
    assert (opened.kind, opened.dispute_outcome) == (EventKind.DISPUTE_OPENED, None)

    item = {
        "payout_item_id": "ITEM1",
        "transaction_status": "UNCLAIMED",
        "payout_item": {"amount": {"currency": "USD", "value": "5.00"}},
    }
    unclaimed = paypal_events.translate(event("PAYMENT.PAYOUTS-ITEM.UNCLAIMED", item))
    assert (unclaimed.kind, unclaimed.object_id, unclaimed.amount) == (
        EventKind.PAYOUT_DELAYED,
        "ITEM1",
        500,
    )
    assert unclaimed.delayed_reason == "unclaimed"
    for suffix in ("FAILED", "RETURNED", "BLOCKED"):
        failed = paypal_events.translate(event(f"PAYMENT.PAYOUTS-ITEM.{suffix}", item))
        assert failed.kind is EventKind.PAYOUT_FAILED and failed.object_id == "ITEM1"
    other = paypal_events.translate(event("BILLING.SUBSCRIPTION.CREATED", {"id": "I-1"}))
    assert other.kind is EventKind.IGNORED
    assert paypal_events.payment_id_from_reference(f"{PREFIX}-payment-41", IDS) == 41
    assert paypal_events.payment_id_from_reference("booking-41", IDS) is None
    with pytest.raises(InvalidSignatureError):
        paypal_events.translate({"id": "x"})


# --------------------------------------------------------------------------- the checks


async def test_spec_validation_catches_what_breaks_the_specs(
    double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    """Validation that never fails proves nothing: a request PayPal's spec refuses and a
    response it refuses are both caught (then forgotten, being provoked on purpose)."""
    if not paypal_specs.enabled:
        pytest.skip(paypal_specs.reason or "PayPal specs absent")
    async with httpx.AsyncClient(base_url=double.url) as http:
        token = (
            await http.post(
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(double.client_id, double.client_secret),
            )
        ).json()["access_token"]
        bad = await http.post(
            "/v2/checkout/orders",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "intent": "SELL",
                "purchase_units": [{"amount": {"currency_code": "USD", "value": "1,00"}}],
            },
        )
        unauthenticated = await http.get("/v2/payments/refunds/ANY")
    assert bad.status_code == 422 or bad.status_code >= 400
    assert unauthenticated.status_code == 401
    provoked = list(double.violations)
    assert any("orders.create" in p and "request" in p for p in provoked), provoked
    assert any("refunds.get" in p and "request" in p for p in provoked), provoked  # no Bearer
    paypal_specs.forget(provoked)
    double.violations.clear()

    problems = paypal_specs.validate(
        "captures.get",
        "GET",
        "/v2/payments/captures/ABC",
        [],
        {"authorization": "Bearer x"},
        b"",
        200,
        {"content-type": "application/json"},
        b'{"id": "ABC", "status": "DONE", "amount": {"currency_code": "USD", "value": "1.0.0"}}',
    )
    assert problems and all("response 200" in p for p in problems), problems
    paypal_specs.forget(problems)


# --------------------------------------------------------------------------- sandbox

SANDBOX = (
    os.environ.get("PAYPAL_MODE") == "sandbox"
    and bool(os.environ.get("PAYPAL_CLIENT_ID"))
    and bool(os.environ.get("PAYPAL_CLIENT_SECRET"))
)


@pytest.mark.skipif(
    not SANDBOX,
    reason="the PayPal sandbox run needs PAYPAL_MODE=sandbox, PAYPAL_CLIENT_ID and _SECRET",
)
async def test_against_the_paypal_sandbox(paypal_specs: SpecValidator) -> None:
    """What can run without a human buyer: token, order creation, look-up, the refusal to
    authorise an unapproved order (with PayPal's debug id), and webhook verification
    refusing forged headers - every exchange validated against the specs."""
    transport = ValidatingTransport(paypal_specs)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        paypal_client_id=os.environ["PAYPAL_CLIENT_ID"],
        paypal_client_secret=os.environ["PAYPAL_CLIENT_SECRET"],
        paypal_mode="sandbox",
        paypal_api_base=None,
        paypal_webhook_id=os.environ.get("PAYPAL_WEBHOOK_ID") or None,
        provider_timeout_seconds=30,
    )
    adapter = PayPalProvider(settings, transport=transport, ids=IDS)
    try:
        assert adapter.api_base == "https://api-m.sandbox.paypal.com"
        # invoice_id must be unique per merchant account: a random payment id keeps reruns apart.
        payment_id = secrets.randbelow(10**12)
        hold = await adapter.create_hold(
            NewHold(
                payment_id=payment_id,
                booking_id=1,
                amount=1234,
                currency="USD",
                return_url=RETURN_URL,
                cancel_url=CANCEL_URL,
            ),
            idempotency_key=f"payment-{payment_id}-create-{secrets.token_hex(4)}",
        )
        assert hold.state is HoldState.REQUIRES_APPROVAL and hold.amount == 1234
        assert hold.approval_url and "paypal.com" in hold.approval_url
        looked_up = await adapter.get_hold(HoldRef(hold.provider_payment_id))
        assert looked_up.state is HoldState.REQUIRES_APPROVAL
        with pytest.raises(ProviderError) as refused:
            await adapter.confirm_hold(
                provider_payment_id=hold.provider_payment_id,
                payer_id=None,
                idempotency_key=f"payment-{payment_id}-execute",
            )
        assert refused.value.code in ("ORDER_NOT_APPROVED", "PAYER_ACTION_REQUIRED")
        assert isinstance(refused.value, PayPalError) and refused.value.debug_id
        if settings.paypal_webhook_id:
            forged = signed_headers(throwaway_certificate()[0], b"{}", "X", PAYPAL_CERT)
            with pytest.raises(InvalidSignatureError):
                await adapter.parse_event(forged, b'{"id":"WH-1","event_type":"X","resource":{}}')
        assert adapter.token_fetches == 1
    finally:
        await adapter.aclose()
    assert transport.exchanges >= 4
    assert transport.violations == [], "\n".join(transport.violations)


async def test_fees_from_the_breakdowns_and_transaction_search_paged(
    provider: PayPalProvider, double: PayPalDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture's fee is `seller_receivable_breakdown.paypal_fee`, a refund's fee given
    back `seller_payable_breakdown.paypal_fee` (0: PayPal keeps it); the statement reads
    every page of Transaction Search, validated against reporting_transactions_v1.json."""
    ref = await authorized_hold(provider, double, 61, 10000)
    captured = await provider.capture(
        ref=ref, amount=10000, currency="USD", idempotency_key="payment-61-capture"
    )
    # 3.49% of 100.00 + 0.49.
    assert captured.fee == 398
    assert (await provider.get_hold(ref)).fee == 398
    refund = await provider.refund(
        ref=replace(ref, capture_id=captured.capture_id),
        amount=2500,
        currency="USD",
        idempotency_key="payment-61-refund-1",
    )
    assert refund.fee_refunded == 0

    monkeypatch.setattr(paypal_statements, "PAGE_SIZE", 1)
    now = datetime.now(UTC)
    lines = await provider.statement(now - timedelta(minutes=5), now + timedelta(minutes=1))
    assert sorted((x.kind, x.reference, x.amount, x.fee, x.currency) for x in lines) == sorted(
        [
            (StatementKind.CAPTURE, captured.capture_id, 10000, 398, "USD"),
            (StatementKind.REFUND, refund.refund_id, -2500, 0, "USD"),
        ]
    )
    searches = [c for c in double.calls if c.operation == "reporting.transactions"]
    assert len(searches) == 2  # one line a page
    assert_spec_checked(double, "reporting.transactions", "authorizations.capture")
