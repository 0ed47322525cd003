"""PayPal through its REST API with httpx: Orders v2 (create, authorise), Payments v2
(capture, void, reauthorise, refund), Payouts v1 and webhook verification.

Each protocol method's calls:
- create_hold: POST /v2/checkout/orders (intent AUTHORIZE).
- confirm_hold: POST /v2/checkout/orders/{id}/authorize; on ORDER_ALREADY_AUTHORIZED, GET the
  order and answer its authorisation; on ORDER_NOT_APPROVED, GET the order and, if the payer
  has approved since (a refusal replayed for a reused request id), authorise once more.
- get_hold: GET /v2/checkout/orders/{id} (and GET /v2/payments/authorizations/{id} for a
  reauthorisation the order does not list).
- capture: POST /v2/payments/authorizations/{id}/capture (final_capture); on
  AUTHORIZATION_ALREADY_CAPTURED, GET the order and answer the capture made.
- cancel: POST /v2/payments/authorizations/{id}/void (GET the order first when no
  authorisation id is known).
- refund: POST /v2/payments/captures/{id}/refund.
- reauthorize: POST /v2/payments/authorizations/{id}/reauthorize.
- send_payout / send_payout_batch: POST /v1/payments/payouts, then GET
  /v1/payments/payouts/{batch id} for the item ids and statuses. A reused sender_batch_id
  refused with a link to its batch (in `links`, or in a detail) answers that batch; refused
  without one it is ProviderUnavailableError: the batch may be paid, so never a refusal.
- find_payout: the same POST again (same PayPal-Request-Id and sender_batch_id), or GET the
  batch when its id is known.
- parse_event: POST /v1/notifications/verify-webhook-signature ("api") or the offline check,
  then translate_event.
- translate_event: no verification; GET the capture / authorisation when the event does not
  name the order.

Every mutating call carries `PayPal-Request-Id` = our idempotency key: PayPal answers a repeat
with the first outcome and acts once. Payouts also carry our `sender_batch_id`, which PayPal
refuses to pay twice within 30 days even when the request id is forgotten.

Errors: PayPal's body (`name`, `message`, `details[].issue`, `debug_id`) becomes PayPalError
(a ProviderError; code = the first issue, else the name; the debug_id in the message, on the
exception and in the log); payer declines become PayPalDeclinedError (a PaymentDeclinedError);
timeouts, connection errors and 5xx become ProviderUnavailableError (outcome unknown: ask
again with the same key); 429 is retried a bounded number of times; one 401 refreshes the
token and retries once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from handwork_payments.kit.money import exponent, format_amount, normalize_currency
from handwork_payments.providers import paypal_events
from handwork_payments.providers.base import (
    EventKind,
    HoldRef,
    HoldState,
    InvalidSignatureError,
    PaymentDeclinedError,
    PayoutOrder,
    ProviderCapture,
    ProviderError,
    ProviderEvent,
    ProviderHold,
    ProviderRefund,
    ProviderTransfer,
    ProviderUnavailableError,
    TransferState,
)
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_API_BASE = "https://api-m.sandbox.paypal.com"
LIVE_API_BASE = "https://api-m.paypal.com"

# A token is renewed this long before PayPal says it expires (tokens live ~9 hours), so a
# request never leaves with a token that dies in flight.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
MAX_RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER_SECONDS = 10.0
# PayPal's own limit on items in one payout request.
MAX_PAYOUT_ITEMS = 15_000
PAYOUT_PAGE_SIZE = 1000  # the spec's maximum page_size
MAX_PAYOUT_PAGES = MAX_PAYOUT_ITEMS // PAYOUT_PAGE_SIZE + 1
CERT_CACHE_SIZE = 16

# ISO 4217 gives these two decimals, PayPal takes them in whole units only
# ("DECIMALS_NOT_SUPPORTED"); JPY is already exponent 0 in kit.money.
WHOLE_UNITS_AT_PAYPAL = frozenset({"HUF", "TWD"})

# Issues that mean the payer's wallet, bank or PayPal's risk checks said no: a decline, not
# a fault of ours (402 for the API, the payment fails).
DECLINE_ISSUES = frozenset(
    {
        "INSTRUMENT_DECLINED",
        "PAYER_CANNOT_PAY",
        "TRANSACTION_REFUSED",
        "PAYER_ACCOUNT_RESTRICTED",
        "PAYER_ACCOUNT_LOCKED_OR_CLOSED",
        "CARD_EXPIRED",
        "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
        "TRANSACTION_LIMIT_EXCEEDED",
        "DECLINED_DUE_TO_RELATED_TXN",
        "AUTHORIZATION_DENIED",
    }
)

# Payout item transaction_status -> TransferState.
#   SUCCESS -> SUCCEEDED.
#   FAILED, RETURNED (unclaimed past the 30-day window, or refused), BLOCKED, REFUNDED,
#   REVERSED, DENIED, CANCELED -> FAILED: the money came back (or never left).
#   PENDING, ONHOLD, UNCLAIMED (the receiver may still claim), NEW and anything unknown ->
#   PENDING: never fail money that may still arrive, never succeed what is not final.
PAYOUT_ITEM_STATES: dict[str, TransferState] = {
    "SUCCESS": TransferState.SUCCEEDED,
    "FAILED": TransferState.FAILED,
    "RETURNED": TransferState.FAILED,
    "BLOCKED": TransferState.FAILED,
    "REFUNDED": TransferState.FAILED,
    "REVERSED": TransferState.FAILED,
    "DENIED": TransferState.FAILED,
    "CANCELED": TransferState.FAILED,
    "PENDING": TransferState.PENDING,
    "ONHOLD": TransferState.PENDING,
    "UNCLAIMED": TransferState.PENDING,
    "NEW": TransferState.PENDING,
}
# A batch PayPal refused as a whole: its items never paid out.
FAILED_BATCH_STATUSES = frozenset({"DENIED", "CANCELED"})

_PAYOUT_BATCH_LINK = re.compile(r"/v1/payments/payouts/([A-Za-z0-9]+)(?:$|[/?])")


class PayPalError(ProviderError):
    """PayPal answered and refused. `code` is the first details[].issue (else the error
    name); `debug_id` is what PayPal support asks for."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        debug_id: str | None = None,
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.debug_id = debug_id
        self.status = status
        self.body: Mapping[str, Any] = body or {}


class PayPalDeclinedError(PaymentDeclinedError, PayPalError):
    """The payer's funding was declined."""


def transfer_state(status: str | None) -> TransferState:
    return PAYOUT_ITEM_STATES.get((status or "").upper(), TransferState.PENDING)


def paypal_value(amount: int, currency: str) -> str:
    """Integer minor units as the decimal string PayPal takes ("12.50", "1500" for JPY)."""
    if currency in WHOLE_UNITS_AT_PAYPAL:
        unit = 10 ** exponent(currency)
        if amount % unit:
            raise PayPalError(
                f"PayPal takes {currency} in whole units only", code="DECIMALS_NOT_SUPPORTED"
            )
        return str(amount // unit)
    return format_amount(amount, currency)


def paypal_money(amount: int, currency: str) -> dict[str, str]:
    """An Orders / Payments v2 money object."""
    currency = normalize_currency(currency)
    return {"currency_code": currency, "value": paypal_value(amount, currency)}


def minor(money: Any, default: int | None = None) -> int | None:
    """A PayPal money object as integer minor units (default when absent)."""
    value = paypal_events.minor_amount(money)
    return default if value is None else value


def _currency(money: Any, default: str) -> str:
    if isinstance(money, Mapping):
        code = money.get("currency_code") or money.get("currency")
        if isinstance(code, str):
            return code.upper()
    return default


def _link(resource: Mapping[str, Any], *rels: str) -> str | None:
    for rel in rels:
        for link in resource.get("links") or ():
            if isinstance(link, Mapping) and link.get("rel") == rel and link.get("href"):
                return str(link["href"])
    return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)  # PayPal's RFC 3339, "Z" included (3.11+)
    except ValueError:
        return None


def _segment(value: str) -> str:
    """An id as one path segment: an id is never allowed to reach another path."""
    return quote(value, safe="")


class PayPalProvider:
    """The PaymentProvider for PayPal's REST API. Construct with the settings; `transport`
    and `fetch_cert` exist for tests (a validating transport, a throwaway certificate)."""

    name = "paypal"
    live = True

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        fetch_cert: paypal_events.CertFetcher | None = None,
        rate_limit_backoff_seconds: float = 0.5,
        max_rate_limit_retries: int = MAX_RATE_LIMIT_RETRIES,
    ) -> None:
        if not (settings.paypal_client_id and settings.paypal_client_secret):
            raise ValueError("PayPalProvider needs PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET")
        self._settings = settings
        self._client_id = settings.paypal_client_id
        self._client_secret = settings.paypal_client_secret
        self.api_base = (
            settings.paypal_api_base
            or (LIVE_API_BASE if settings.paypal_mode == "live" else SANDBOX_API_BASE)
        ).rstrip("/")
        timeout = httpx.Timeout(settings.provider_timeout_seconds)
        self._http = httpx.AsyncClient(base_url=self.api_base, timeout=timeout, transport=transport)
        # Certificates come from paypal.com, never from the API base a test may point at.
        self._cert_http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._fetch_cert_override = fetch_cert
        self._certs: dict[str, bytes] = {}
        self._token: str | None = None
        self._token_renew_at = 0.0
        # One token request at a time: a burst of calls after expiry (or of 401s) must not
        # each fetch a token.
        self._token_lock = asyncio.Lock()
        self._backoff_seconds = rate_limit_backoff_seconds
        self._max_rate_limit_retries = max_rate_limit_retries
        self.token_fetches = 0

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._cert_http.aclose()

    # ----------------------------------------------------------------------- OAuth2

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < self._token_renew_at:
            return token
        async with self._token_lock:
            # Another task may have fetched one while we waited for the lock.
            if self._token is None or time.monotonic() >= self._token_renew_at:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _renew_rejected_token(self, rejected: str) -> None:
        """After a 401: fetch a new token unless another task already replaced the one
        PayPal rejected (so N concurrent 401s cause one token request, not N)."""
        async with self._token_lock:
            if self._token in (None, rejected):
                await self._fetch_token()

    async def _fetch_token(self) -> None:
        # No OpenAPI spec covers /v1/oauth2/token; its shape is PayPal's documented one.
        try:
            response = await self._http.post(
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(self._client_id, self._client_secret),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise ProviderUnavailableError(f"PayPal token request failed: {exc!r}") from exc
        if response.status_code >= 500:
            raise ProviderUnavailableError(f"PayPal token request answered {response.status_code}")
        body = self._json_or_empty(response)
        if response.status_code != 200 or not body.get("access_token"):
            debug_id = response.headers.get("PayPal-Debug-Id")
            log.error(
                "PayPal refused the client credentials: %s %s (debug_id=%s)",
                response.status_code,
                body.get("error"),
                debug_id,
            )
            reason = body.get("error_description") or body.get("error") or response.status_code
            raise PayPalError(
                f"PayPal refused the client credentials: {reason}",
                code=str(body.get("error") or f"HTTP_{response.status_code}"),
                debug_id=debug_id,
                status=response.status_code,
                body=body,
            )
        expires_in = float(body.get("expires_in") or 0)
        margin = min(TOKEN_REFRESH_MARGIN_SECONDS, expires_in / 10)
        self._token = str(body["access_token"])
        self._token_renew_at = time.monotonic() + max(expires_in - margin, 0.0)
        self.token_fetches += 1

    # ----------------------------------------------------------------------- HTTP

    @staticmethod
    def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        request_id: str | None = None,
        representation: bool = False,
    ) -> dict[str, Any]:
        """One API call, its JSON answer on 2xx ({} for 204); errors mapped as the module
        docstring says."""
        headers = {"Accept": "application/json"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id
        if representation:
            headers["Prefer"] = "return=representation"
        if json_body is not None:
            content = json.dumps(json_body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        renewed = False
        rate_limited = 0
        while True:
            token = await self._access_token()
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                )
            except httpx.TimeoutException as exc:
                raise ProviderUnavailableError(f"PayPal {method} {path} timed out") from exc
            except httpx.TransportError as exc:
                raise ProviderUnavailableError(f"PayPal {method} {path} failed: {exc!r}") from exc
            status = response.status_code
            # A 401 means the request was not processed: safe to send again once.
            if status == 401 and not renewed:
                renewed = True
                log.info("PayPal rejected the access token; fetching a new one")
                await self._renew_rejected_token(token)
                continue
            # A 429 was not processed either; back off a bounded number of times.
            if status == 429 and rate_limited < self._max_rate_limit_retries:
                rate_limited += 1
                await asyncio.sleep(self._retry_delay(rate_limited, response))
                continue
            if 200 <= status < 300:
                if status == 204 or not response.content:
                    return {}
                try:
                    body = response.json()
                except ValueError as exc:
                    # It acted (2xx) but we cannot read what it did: unknown, ask again.
                    raise ProviderUnavailableError(
                        f"PayPal {method} {path} answered unreadable JSON"
                    ) from exc
                return body if isinstance(body, dict) else {}
            raise self._error(method, path, response)

    def _retry_delay(self, attempt: int, response: httpx.Response) -> float:
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
        return min(self._backoff_seconds * 2 ** (attempt - 1), MAX_RETRY_AFTER_SECONDS)

    def _error(self, method: str, path: str, response: httpx.Response) -> Exception:
        body = self._json_or_empty(response)
        status = response.status_code
        name = str(body.get("name") or body.get("error") or f"HTTP_{status}")
        message = str(
            body.get("message") or body.get("error_description") or response.reason_phrase
        )
        details = [d for d in body.get("details") or () if isinstance(d, Mapping)]
        issues = [str(d["issue"]) for d in details if d.get("issue")]
        debug_id = body.get("debug_id") or response.headers.get("PayPal-Debug-Id")
        code = issues[0] if issues else name
        described = "; ".join(
            f"{d.get('issue')}" + (f": {d['description']}" if d.get("description") else "")
            for d in details
            if d.get("issue")
        )
        text = f"PayPal {name}: {message}" + (f" ({described})" if described else "")
        text += f" [debug_id {debug_id}]" if debug_id else ""
        log.warning(
            "PayPal %s %s answered %s %s (debug_id=%s)", method, path, status, code, debug_id
        )
        if status >= 500 or status in (408, 429):
            return ProviderUnavailableError(text)
        cls = PayPalDeclinedError if code in DECLINE_ISSUES else PayPalError
        return cls(
            text, code=code, debug_id=str(debug_id) if debug_id else None, status=status, body=body
        )

    # ----------------------------------------------------------------------- holds

    async def create_hold(
        self,
        *,
        payment_id: int,
        booking_id: int,
        amount: int,
        currency: str,
        payment_method: str | None,
        return_url: str | None,
        cancel_url: str | None,
        idempotency_key: str,
    ) -> ProviderHold:
        assert amount > 0, "a hold is for a positive amount"
        currency = normalize_currency(currency)
        # Our payment id, in the form PayPal echoes back on captures, refunds and disputes;
        # invoice_id must be unique per payment (PayPal may refuse a reused one).
        reference = f"payment-{payment_id}"
        experience: dict[str, Any] = {
            "user_action": "PAY_NOW",
            "shipping_preference": "NO_SHIPPING",  # a service booking ships nothing
        }
        if return_url:
            experience["return_url"] = return_url
        if cancel_url:
            experience["cancel_url"] = cancel_url
        body = {
            "intent": "AUTHORIZE",
            "purchase_units": [
                {
                    "reference_id": f"booking-{booking_id}",
                    "description": f"Booking {booking_id}",
                    "custom_id": reference,
                    "invoice_id": reference,
                    "amount": paypal_money(amount, currency),
                }
            ],
            "payment_source": {"paypal": {"experience_context": experience}},
        }
        order = await self._call(
            "POST",
            "/v2/checkout/orders",
            json_body=body,
            request_id=idempotency_key,
            representation=True,
        )
        return self._hold_from_order(order, amount=amount, currency=currency)

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        path = f"/v2/checkout/orders/{_segment(provider_payment_id)}/authorize"
        try:
            order = await self._call(
                "POST", path, json_body={}, request_id=idempotency_key, representation=True
            )
        except PayPalError as exc:
            # Authorised already (by an earlier call whose answer we lost, under another
            # key): the order holds the authorisation; answer it rather than fail.
            if exc.code in ("ORDER_ALREADY_AUTHORIZED", "ORDER_COMPLETED_OR_VOIDED"):
                return self._hold_from_order(await self._get_order(provider_payment_id))
            if exc.code != "ORDER_NOT_APPROVED":
                raise
            # PayPal "returns the latest status of the previous request" with a request id:
            # an execute refused before the payer approved may be refused again from that
            # memory after they did. The order itself says whether that refusal still holds.
            current = await self._get_order(provider_payment_id)
            status = str(current.get("status", "")).upper()
            if status == "COMPLETED":
                return self._hold_from_order(current)
            if status != "APPROVED":
                raise
            order = await self._call(
                "POST",
                path,
                json_body={},
                request_id=f"{idempotency_key}-approved",
                representation=True,
            )
        if not order.get("purchase_units"):
            order = await self._get_order(provider_payment_id)
        payer = order.get("payer")
        actual_payer = payer.get("payer_id") if isinstance(payer, Mapping) else None
        if payer_id and actual_payer and payer_id != actual_payer:
            # Orders v2 binds the payer at approval, so this is only worth a look, not a refusal.
            log.warning(
                "PayPal order %s was approved by payer %s, the return URL said %s",
                provider_payment_id,
                actual_payer,
                payer_id,
            )
        return self._hold_from_order(order)

    async def get_hold(self, ref: HoldRef) -> ProviderHold:
        order = await self._get_order(ref.provider_payment_id)
        extra: dict[str, Any] | None = None
        if ref.authorization_id and ref.authorization_id not in {
            a.get("id") for a in self._payments(order)["authorizations"]
        }:
            # A reauthorisation may not be listed on the order: ask for it directly.
            extra = await self._call(
                "GET", f"/v2/payments/authorizations/{_segment(ref.authorization_id)}"
            )
        return self._hold_from_order(
            order, preferred_authorization=ref.authorization_id, extra_authorization=extra
        )

    async def capture(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderCapture:
        assert amount > 0, "a capture is for a positive amount"
        authorization_id = ref.authorization_id or await self._authorization_id(ref)
        path = f"/v2/payments/authorizations/{_segment(authorization_id)}/capture"
        # invoice_id stays on the order: setting it again here would trip DUPLICATE_INVOICE_ID.
        body = {"amount": paypal_money(amount, currency), "final_capture": True}
        try:
            capture = await self._call(
                "POST", path, json_body=body, request_id=idempotency_key, representation=True
            )
        except PayPalError as exc:
            if exc.code == "AUTHORIZATION_ALREADY_CAPTURED":
                existing = await self._existing_capture(ref.provider_payment_id)
                if existing is not None:
                    return existing
            raise
        status = str(capture.get("status", "")).upper()
        if status in ("DECLINED", "FAILED"):
            raise PayPalDeclinedError(
                f"PayPal {status.lower()} the capture of {authorization_id}",
                code=f"CAPTURE_{status}",
            )
        return ProviderCapture(
            capture_id=str(capture["id"]), amount=minor(capture.get("amount"), amount) or amount
        )

    async def cancel(self, *, ref: HoldRef, idempotency_key: str) -> None:
        authorization_id = ref.authorization_id
        if authorization_id is None:
            order = await self._get_order(ref.provider_payment_id)
            active = [
                a
                for a in self._payments(order)["authorizations"]
                if str(a.get("status", "")).upper() in ("CREATED", "PENDING")
            ]
            if not active:
                # Nothing reserved: an unapproved or unauthorised order simply lapses
                # (Orders v2 has no cancel call).
                return
            authorization_id = str(active[-1]["id"])
        path = f"/v2/payments/authorizations/{_segment(authorization_id)}/void"
        try:
            # The Payments v2 spec lists no PayPal-Request-Id for void; PayPal's idempotency
            # guide says POSTs honour it, and a void is naturally idempotent besides.
            await self._call("POST", path, request_id=idempotency_key)
        except PayPalError as exc:
            if exc.code in ("PREVIOUSLY_VOIDED", "AUTHORIZATION_VOIDED"):
                return
            raise

    async def refund(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderRefund:
        assert amount > 0, "a refund is for a positive amount"
        capture_id = ref.capture_id or await self._capture_id(ref)
        path = f"/v2/payments/captures/{_segment(capture_id)}/refund"
        refund = await self._call(
            "POST",
            path,
            json_body={"amount": paypal_money(amount, currency)},
            request_id=idempotency_key,
            representation=True,
        )
        status = str(refund.get("status", "")).upper()
        if status in ("FAILED", "CANCELLED"):
            details = refund.get("status_details")
            reason = details.get("reason") if isinstance(details, Mapping) else None
            raise PayPalError(
                f"PayPal refund {refund.get('id')} {status.lower()}"
                + (f": {reason}" if reason else ""),
                code=f"REFUND_{status}",
            )
        return ProviderRefund(
            refund_id=str(refund["id"]), amount=minor(refund.get("amount"), amount) or amount
        )

    async def reauthorize(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderHold:
        """A new authorisation for `amount` after the 3-day honour period (PayPal allows it
        once, days 4-29). The answer carries the new authorisation id, which later captures
        and voids must use; the 29-day limit of the original still applies (capture_by)."""
        authorization_id = ref.authorization_id or await self._authorization_id(ref)
        path = f"/v2/payments/authorizations/{_segment(authorization_id)}/reauthorize"
        auth = await self._call(
            "POST",
            path,
            json_body={"amount": paypal_money(amount, currency)},
            request_id=idempotency_key,
            representation=True,
        )
        related = paypal_events.related_ids(auth)
        state, failure = self._authorization_state(auth)
        return ProviderHold(
            provider_payment_id=str(related.get("order_id") or ref.provider_payment_id),
            state=state,
            amount=minor(auth.get("amount"), amount) or amount,
            currency=_currency(auth.get("amount"), normalize_currency(currency)),
            authorization_id=str(auth["id"]),
            capture_by=_time(auth.get("expiration_time")),
            failure_message=failure,
        )

    # ----------------------------------------------------------------------- hold helpers

    async def _get_order(self, order_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v2/checkout/orders/{_segment(order_id)}")

    @staticmethod
    def _payments(order: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
        found: dict[str, list[Mapping[str, Any]]] = {
            "authorizations": [],
            "captures": [],
            "refunds": [],
        }
        for unit in order.get("purchase_units") or ():
            payments = unit.get("payments") if isinstance(unit, Mapping) else None
            if isinstance(payments, Mapping):
                for kind, items in found.items():
                    items.extend(p for p in payments.get(kind) or () if isinstance(p, Mapping))
        return found

    @staticmethod
    def _authorization_state(auth: Mapping[str, Any]) -> tuple[HoldState, str | None]:
        status = str(auth.get("status", "")).upper()
        if status == "CREATED":
            return HoldState.AUTHORIZED, None
        if status in ("CAPTURED", "PARTIALLY_CAPTURED"):
            return HoldState.CAPTURED, None
        if status == "VOIDED":
            return HoldState.CANCELED, "authorization voided"
        if status == "EXPIRED":
            return HoldState.CANCELED, "authorization expired"
        if status == "DENIED":
            return HoldState.FAILED, "authorization denied"
        # PENDING: PayPal is still reviewing; nothing is reserved for certain yet.
        return HoldState.REQUIRES_ACTION, f"authorization {status.lower() or 'unknown'}"

    def _hold_from_order(
        self,
        order: Mapping[str, Any],
        *,
        amount: int | None = None,
        currency: str | None = None,
        preferred_authorization: str | None = None,
        extra_authorization: Mapping[str, Any] | None = None,
    ) -> ProviderHold:
        """Order states: CREATED / SAVED / PAYER_ACTION_REQUIRED -> REQUIRES_APPROVAL (with
        the approval URL); APPROVED -> REQUIRES_ACTION (the payer approved, our authorise
        call - confirm_hold - is what is missing); VOIDED -> CANCELED; COMPLETED -> from its
        authorisation and captures."""
        units = order.get("purchase_units") or [{}]
        unit: Mapping[str, Any] = units[0] if isinstance(units[0], Mapping) else {}
        currency = _currency(unit.get("amount"), currency or "USD")
        amount = minor(unit.get("amount"), amount) or 0
        order_id = str(order["id"])
        status = str(order.get("status", "")).upper()
        base: dict[str, Any] = {
            "provider_payment_id": order_id,
            "amount": amount,
            "currency": currency,
        }
        if status in ("CREATED", "SAVED", "PAYER_ACTION_REQUIRED"):
            return ProviderHold(
                **base,
                state=HoldState.REQUIRES_APPROVAL,
                approval_url=_link(order, "payer-action", "approve"),
            )
        if status == "APPROVED":
            return ProviderHold(**base, state=HoldState.REQUIRES_ACTION)
        if status == "VOIDED":
            return ProviderHold(**base, state=HoldState.CANCELED, failure_message="order voided")

        payments = self._payments(order)
        auths = list(payments["authorizations"])
        if extra_authorization is not None:
            auths.append(extra_authorization)
        auth: Mapping[str, Any] | None = next(
            (
                a
                for a in auths
                if preferred_authorization and a.get("id") == preferred_authorization
            ),
            None,
        )
        if auth is None and auths:
            # The newest one still standing (a reauthorisation supersedes the original).
            live = [a for a in auths if str(a.get("status", "")).upper() != "VOIDED"]
            auth = (live or auths)[-1]
        # PENDING captures count: the money is taken, only its settlement is pending.
        captures = [
            c
            for c in payments["captures"]
            if str(c.get("status", "")).upper()
            in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED", "PENDING")
        ]
        refunded = sum(
            minor(r.get("amount"), 0) or 0
            for r in payments["refunds"]
            if str(r.get("status", "")).upper() in ("COMPLETED", "PENDING")
        )
        captured = sum(minor(c.get("amount"), 0) or 0 for c in captures)
        authorization_id = str(auth["id"]) if auth is not None else None
        if captures:
            return ProviderHold(
                **base,
                state=HoldState.CAPTURED,
                authorization_id=authorization_id,
                capture_id=str(captures[-1]["id"]),
                captured_amount=captured,
                refunded_amount=refunded,
            )
        if auth is None:
            return ProviderHold(
                **base,
                state=HoldState.REQUIRES_ACTION,
                failure_message=f"order {status.lower()} without an authorization",
            )
        state, failure = self._authorization_state(auth)
        return ProviderHold(
            **base,
            state=state,
            authorization_id=authorization_id,
            capture_by=_time(auth.get("expiration_time"))
            if state is HoldState.AUTHORIZED
            else None,
            failure_message=failure,
        )

    async def _authorization_id(self, ref: HoldRef) -> str:
        hold = await self.get_hold(ref)
        if hold.authorization_id is None:
            raise PayPalError(
                f"PayPal order {ref.provider_payment_id} has no authorization",
                code="NO_AUTHORIZATION",
            )
        return hold.authorization_id

    async def _capture_id(self, ref: HoldRef) -> str:
        hold = await self.get_hold(ref)
        if hold.capture_id is None:
            raise PayPalError(
                f"PayPal order {ref.provider_payment_id} has no capture", code="NO_CAPTURE"
            )
        return hold.capture_id

    async def _existing_capture(self, order_id: str) -> ProviderCapture | None:
        """The capture already made on an order (one authorisation per order, final
        capture): what a capture retried under a new key must answer."""
        hold = await self.get_hold(HoldRef(provider_payment_id=order_id))
        if hold.capture_id is None:
            return None
        return ProviderCapture(capture_id=hold.capture_id, amount=hold.captured_amount)

    # ----------------------------------------------------------------------- payouts

    async def send_payout(self, order: PayoutOrder) -> ProviderTransfer:
        """A one-item batch whose sender_batch_id is the payout's own idempotency key, so
        find_payout can look it up again by re-sending it."""
        transfers = await self.send_payout_batch([order], batch_key=order.idempotency_key)
        return transfers[0]

    async def send_payout_batch(
        self, orders: Sequence[PayoutOrder], batch_key: str
    ) -> list[ProviderTransfer]:
        """Pay several workers in one PayPal batch. `batch_key` (our ids, e.g.
        "payout-batch-{id}") is both the PayPal-Request-Id and the sender_batch_id: sending
        the same batch again answers the first batch and never pays twice - that is also how
        a batch whose answer was lost is resolved. Items are matched back to orders by
        sender_item_id "payout-{id}". An item PayPal has not listed yet comes back PENDING
        with transfer_id "" (poll get_payout_batch with the batch_id)."""
        if not orders:
            return []
        if len(orders) > MAX_PAYOUT_ITEMS:
            raise ValueError(f"a PayPal payout batch takes at most {MAX_PAYOUT_ITEMS} items")
        if len({o.payout_id for o in orders}) != len(orders):
            raise ValueError("a payout appears twice in one batch")
        body = {
            "sender_batch_header": {
                "sender_batch_id": batch_key,
                "recipient_type": "EMAIL",
                "email_subject": "You have a payout from Handwork",
            },
            "items": [
                {
                    "recipient_type": "EMAIL",
                    "receiver": order.destination,
                    "amount": {
                        "currency": normalize_currency(order.currency),
                        "value": paypal_value(order.amount, normalize_currency(order.currency)),
                    },
                    "sender_item_id": order.idempotency_key,
                    "note": f"Handwork payout {order.payout_id}",
                }
                for order in orders
            ],
        }
        try:
            created = await self._call(
                "POST", "/v1/payments/payouts", json_body=body, request_id=batch_key
            )
            header = created.get("batch_header") or {}
            batch_id = str(header["payout_batch_id"])
        except PayPalError as exc:
            if not self._is_duplicate_batch(exc):
                raise
            duplicate = self._duplicate_batch_id(exc)
            if duplicate is None:
                # PayPal has this sender_batch_id already - it may have paid it - and did
                # not say which batch it is (a bare "Duplicate batch request" has been seen
                # in the wild). Never a refusal, or the caller would hand the money back and
                # pay it again: the outcome is unknown until the batch's item webhooks (they
                # name our sender_item_id) or an operator settle it.
                raise ProviderUnavailableError(
                    f"PayPal already has payout batch {batch_key} and did not link it: "
                    f"not sent again ({exc.message})"
                ) from exc
            # PayPal forgot the request id but not the sender_batch_id: the batch exists
            # already and the error links to it.
            log.info("PayPal payout batch %s already exists as %s", batch_key, duplicate)
            batch_id = duplicate
        except KeyError as exc:
            raise ProviderUnavailableError("PayPal payout answer without a batch id") from exc
        header, items = await self._get_batch(batch_id)
        return self._transfers_for(orders, batch_id, header, items)

    async def find_payout(
        self, order: PayoutOrder, *, batch_id: str | None = None
    ) -> ProviderTransfer | None:
        """The payout made under `order.idempotency_key`.

        With `batch_id` (stored from an earlier answer) it is a pure look-up: GET the batch,
        None if the item is not in it. Without one, PayPal has no search by sender_batch_id,
        so the one-item batch is sent again with the same PayPal-Request-Id and
        sender_batch_id: PayPal answers the batch that exists (or links to it), and only if
        the lost call never reached PayPal is it made now - what the caller would do next
        anyway, and never twice. Only for payouts sent with send_payout: a payout sent in a
        larger batch must be resolved by re-sending that batch (send_payout_batch with the
        same key) or with its batch_id, never here, or it could be paid twice."""
        if batch_id is not None:
            header, items = await self._get_batch(batch_id)
            item = next(
                (i for i in items if self._sender_item_id(i) == order.idempotency_key), None
            )
            return self._transfer(item, header) if item is not None else None
        return await self.send_payout(order)

    async def get_payout_batch(self, batch_id: str) -> list[ProviderTransfer]:
        """Every item of a batch, for polling."""
        header, items = await self._get_batch(batch_id)
        return [self._transfer(item, header) for item in items]

    async def get_payout_item(self, payout_item_id: str) -> ProviderTransfer:
        item = await self._call("GET", f"/v1/payments/payouts-item/{_segment(payout_item_id)}")
        return self._transfer(item, {})

    async def _get_batch(self, batch_id: str) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
        header: Mapping[str, Any] = {}
        items: list[Mapping[str, Any]] = []
        for page in range(1, MAX_PAYOUT_PAGES + 1):
            batch = await self._call(
                "GET",
                f"/v1/payments/payouts/{_segment(batch_id)}",
                params={"page": page, "page_size": PAYOUT_PAGE_SIZE, "total_required": "true"},
            )
            header = batch.get("batch_header") or header
            page_items = [i for i in batch.get("items") or () if isinstance(i, Mapping)]
            items.extend(page_items)
            total_pages = batch.get("total_pages")
            if not page_items or not isinstance(total_pages, int) or page >= total_pages:
                break
        return header, items

    @staticmethod
    def _sender_item_id(item: Mapping[str, Any]) -> str | None:
        detail = item.get("payout_item")
        return str(detail.get("sender_item_id")) if isinstance(detail, Mapping) else None

    def _transfer(self, item: Mapping[str, Any], header: Mapping[str, Any]) -> ProviderTransfer:
        detail = item.get("payout_item") if isinstance(item.get("payout_item"), Mapping) else {}
        assert isinstance(detail, Mapping)
        status = str(item.get("transaction_status") or "")
        state = transfer_state(status)
        batch_status = str(header.get("batch_status") or "").upper()
        if batch_status in FAILED_BATCH_STATUSES and state is TransferState.PENDING:
            state = TransferState.FAILED
            status = status or f"batch {batch_status}"
        reason = None
        if state is TransferState.FAILED:
            errors = item.get("errors")
            message = errors.get("message") if isinstance(errors, Mapping) else None
            name = errors.get("name") if isinstance(errors, Mapping) else None
            reason = ": ".join(str(p) for p in (status, name, message) if p) or "payout failed"
        amount_money = detail.get("amount")
        return ProviderTransfer(
            transfer_id=str(item.get("payout_item_id") or ""),
            state=state,
            amount=minor(amount_money, 0) or 0,
            currency=_currency(amount_money, ""),
            batch_id=str(item.get("payout_batch_id") or header.get("payout_batch_id") or "")
            or None,
            failure_reason=reason,
        )

    def _transfers_for(
        self,
        orders: Sequence[PayoutOrder],
        batch_id: str,
        header: Mapping[str, Any],
        items: list[Mapping[str, Any]],
    ) -> list[ProviderTransfer]:
        by_sender = {self._sender_item_id(i): i for i in items}
        batch_status = str(header.get("batch_status") or "").upper()
        transfers = []
        for order in orders:
            item = by_sender.get(order.idempotency_key)
            if item is None:
                failed = batch_status in FAILED_BATCH_STATUSES
                transfers.append(
                    ProviderTransfer(
                        transfer_id="",
                        state=TransferState.FAILED if failed else TransferState.PENDING,
                        amount=order.amount,
                        currency=normalize_currency(order.currency),
                        batch_id=batch_id,
                        failure_reason=f"batch {batch_status}" if failed else None,
                    )
                )
                continue
            transfer = self._transfer(item, header)
            if transfer.amount != order.amount:
                # Only possible if a batch key was reused for other orders: say so loudly.
                log.error(
                    "PayPal payout item %s pays %s, payout %s asked %s",
                    transfer.transfer_id,
                    transfer.amount,
                    order.payout_id,
                    order.amount,
                )
            transfers.append(transfer)
        return transfers

    @staticmethod
    def _is_duplicate_batch(exc: PayPalError) -> bool:
        """PayPal's refusal of a sender_batch_id used before (within 30 days)."""
        text = json.dumps(exc.body).upper()
        return "SENDER_BATCH_ID" in text and any(
            word in text for word in ("DUPLICATE", "ALREADY", "EXIST")
        )

    @staticmethod
    def _duplicate_batch_id(exc: PayPalError) -> str | None:
        """The existing batch's id from PayPal's "sender_batch_id already used" error, which
        carries a HATEOAS link to the original payout: in the error's `links` as the spec
        has it, or in a detail's `link` as PayPal has also sent it."""

        def hrefs(value: Any) -> Iterator[str]:
            if isinstance(value, Mapping):
                if isinstance(value.get("href"), str):
                    yield value["href"]
                for inner in value.values():
                    yield from hrefs(inner)
            elif isinstance(value, list):
                for inner in value:
                    yield from hrefs(inner)

        for href in hrefs(exc.body):
            match = _PAYOUT_BATCH_LINK.search(href)
            if match:
                return match.group(1)
        return None

    # ----------------------------------------------------------------------- webhooks

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        self._load_event(body)  # a body that is not an event is refused before PayPal is asked
        webhook_id = self._settings.paypal_webhook_id or ""
        if self._settings.paypal_webhook_verification == "offline":
            await paypal_events.verify_offline(headers, body, webhook_id, self._fetch_cert)
        else:
            await self._verify_via_api(headers, body, webhook_id)
        return await self.translate_event(body)

    async def translate_event(self, body: bytes) -> ProviderEvent:
        """A delivery verified when it arrived (parse_event), translated again without
        asking PayPal to verify it: the inbox retries and replays stored deliveries. The
        order id is still looked up (GET capture / authorisation) when the event does not
        name it, so this may raise ProviderUnavailableError."""
        event = self._load_event(body)
        return await self._with_order_id(event, paypal_events.translate(event))

    @staticmethod
    def _load_event(body: bytes) -> dict[str, Any]:
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise InvalidSignatureError("PayPal webhook body is not JSON") from exc
        if not isinstance(event, dict):
            raise InvalidSignatureError("not a PayPal webhook event")
        return event

    async def _verify_via_api(
        self, headers: Mapping[str, str], body: bytes, webhook_id: str
    ) -> None:
        if not webhook_id:
            raise InvalidSignatureError(
                "PAYPAL_WEBHOOK_ID is not set: cannot verify PayPal webhooks"
            )
        fields = {
            "auth_algo": paypal_events.header(headers, paypal_events.AUTH_ALGO),
            "cert_url": paypal_events.header(headers, paypal_events.CERT_URL),
            "transmission_id": paypal_events.header(headers, paypal_events.TRANSMISSION_ID),
            "transmission_sig": paypal_events.header(headers, paypal_events.TRANSMISSION_SIG),
            "transmission_time": paypal_events.header(headers, paypal_events.TRANSMISSION_TIME),
            "webhook_id": webhook_id,
        }
        if not all(fields.values()):
            raise InvalidSignatureError("missing PayPal transmission headers")
        # The event goes in as the exact bytes PayPal signed (it was checked to be a JSON
        # object): re-serialising it could change the CRC32 PayPal computes over it.
        content = json.dumps(fields)[:-1].encode() + b', "webhook_event": ' + body.strip() + b"}"
        try:
            answer = await self._call(
                "POST", "/v1/notifications/verify-webhook-signature", content=content
            )
        except PayPalError as exc:
            raise InvalidSignatureError(f"PayPal refused to verify the webhook: {exc}") from exc
        if answer.get("verification_status") != "SUCCESS":
            raise InvalidSignatureError(
                f"PayPal webhook verification: {answer.get('verification_status')}"
            )

    async def _with_order_id(
        self, event: Mapping[str, Any], translated: ProviderEvent
    ) -> ProviderEvent:
        """Fill in the order id for events whose resource does not name it (refunds,
        reversals, disputes): one GET of the capture or authorisation they point at."""
        if translated.object_id is not None or translated.kind is EventKind.IGNORED:
            return translated
        hint = paypal_events.lookup_hint(event)
        if hint is None:
            return translated
        kind, resource_id = hint
        path = (
            f"/v2/payments/captures/{_segment(resource_id)}"
            if kind == "capture"
            else f"/v2/payments/authorizations/{_segment(resource_id)}"
        )
        try:
            resource = await self._call("GET", path)
        except PayPalError as exc:
            # Not ours, or gone: the event is recorded against no object, as an unknown one.
            log.warning(
                "PayPal event %s: cannot look up %s %s: %s",
                translated.event_id,
                kind,
                resource_id,
                exc,
            )
            return translated
        order_id = paypal_events.related_ids(resource).get("order_id")
        return replace(translated, object_id=str(order_id)) if order_id else translated

    async def _fetch_cert(self, url: str) -> bytes:
        if self._fetch_cert_override is not None:
            return await self._fetch_cert_override(url)
        cached = self._certs.get(url)
        if cached is not None:
            return cached
        # Checked again here (verify_offline does first): this fetcher must never be the
        # way to make us download from anywhere else.
        if not paypal_events.is_paypal_cert_url(url):
            raise InvalidSignatureError("PAYPAL-CERT-URL is not a paypal.com https address")
        try:
            response = await self._cert_http.get(url)
        except httpx.TransportError as exc:
            raise InvalidSignatureError(f"cannot download the PayPal certificate: {exc!r}") from exc
        if response.status_code != 200:
            raise InvalidSignatureError(
                f"PayPal certificate download answered {response.status_code}"
            )
        if len(self._certs) >= CERT_CACHE_SIZE:
            self._certs.pop(next(iter(self._certs)))
        self._certs[url] = response.content
        return response.content
