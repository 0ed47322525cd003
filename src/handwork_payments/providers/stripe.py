"""Stripe through the official SDK's async client (`StripeClient` + `HTTPXClient`).

Everything Stripe-specific ends here: PaymentIntent statuses become HoldStates, Stripe's
exceptions become base's errors, and every call that moves money carries the idempotency
key the caller derived from our own ids, so asking again after a timeout never acts twice.

Escrow uses manual capture: a PaymentIntent with `capture_method=manual` reserves the money
on the payer's card (`requires_capture`); release captures it, a refund before release
captures less or cancels. Worker payouts are Connect Transfers to the worker's Express
account, grouped as `payout-{id}` so a transfer whose answer was lost can be found again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from handwork_payments.providers import (
    currencies,
    stripe_events,
    stripe_objects,
    stripe_statements,
    stripe_wallets,
)
from handwork_payments.providers.base import (
    ChargebackEvidence,
    HoldRef,
    HoldState,
    InvalidSignatureError,
    NewHold,
    PaymentDeclinedError,
    PaymentMethodDomain,
    PayoutOrder,
    ProviderCapture,
    ProviderError,
    ProviderEvent,
    ProviderHold,
    ProviderIds,
    ProviderRefund,
    ProviderSetup,
    ProviderTransfer,
    ProviderUnavailableError,
    StatementLine,
    StripeProtocols,
)
from handwork_payments.providers.stripe_evidence import stripe_evidence
from handwork_payments.settings import Settings

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe._base_address import BaseAddresses
    from stripe.params import PaymentIntentCreateParams, SetupIntentCreateParams

log = logging.getLogger(__name__)

T = TypeVar("T")

# The SDK retries connection errors, timeouts, 409s and 5xx itself, resending the same
# Idempotency-Key, so a retry can never act twice. One retry: each attempt may wait a whole
# provider_timeout_seconds on a request path, and the caller has its own re-query path.
DEFAULT_NETWORK_RETRIES = 1

# The SDK does not retry 429s. Stripe stores no idempotent result for a rate-limited request,
# so we retry with the same key, backing off exponentially, a bounded number of times.
DEFAULT_RATE_LIMIT_RETRIES = 3
DEFAULT_RATE_LIMIT_BASE_DELAY_SECONDS = 0.5
RATE_LIMIT_MAX_DELAY_SECONDS = 8.0

# Asked with every intent read so one round trip gives the charge id, the captured and
# refunded amounts and `capture_before`.
# The charge's balance transaction carries Stripe's fee (`fee`, itemised in `fee_details`).
_EXPAND_CHARGE = ["latest_charge", "latest_charge.balance_transaction"]

# Stripe's error code when an intent is not in a state the call needs (e.g. captured twice
# after the 24-hour idempotency window).
_UNEXPECTED_STATE = "payment_intent_unexpected_state"


class StripeProvider:
    """PaymentProvider + ConnectProvider over Stripe's real API (or a test peer at
    STRIPE_API_BASE)."""

    name = "stripe"
    live = True
    currency_rules = currencies.STRIPE

    def __init__(
        self,
        settings: Settings,
        *,
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        rate_limit_base_delay_seconds: float = DEFAULT_RATE_LIMIT_BASE_DELAY_SECONDS,
        ids: ProviderIds | None = None,
    ) -> None:
        assert settings.stripe_secret_key, "StripeProvider needs STRIPE_SECRET_KEY"
        self.ids = ids or ProviderIds.configured(settings.provider_id_prefix)
        assert max_network_retries >= 0 and rate_limit_retries >= 0
        self._settings = settings
        self._rate_limit_retries = rate_limit_retries
        self._rate_limit_base_delay_seconds = rate_limit_base_delay_seconds
        self._http = stripe.HTTPXClient(timeout=settings.provider_timeout_seconds)
        base_addresses: BaseAddresses = {}
        if settings.stripe_api_base:
            # A test peer (localstripe, a double) in place of https://api.stripe.com.
            base_addresses["api"] = settings.stripe_api_base.rstrip("/")
        self._client = stripe.StripeClient(
            api_key=settings.stripe_secret_key,
            http_client=self._http,
            base_addresses=base_addresses,
            max_network_retries=max_network_retries,
        )

    async def aclose(self) -> None:
        await self._http.close_async()

    def _idempotent(self, key: str) -> RequestOptions:
        """Our local key under the installation's prefix: another installation's (or ours
        before a database was restored) can never answer it."""
        assert key, "every Stripe call that acts carries an idempotency key"
        return {"idempotency_key": self.ids.key(key)}

    # --- holds -------------------------------------------------------------------------

    async def create_hold(self, hold: NewHold, *, idempotency_key: str) -> ProviderHold:
        # return_url / cancel_url are PayPal's: with allow_redirects="never" Stripe never
        # sends the payer away, and 3-D Secure runs in Stripe.js from the client_secret.
        assert hold.amount > 0
        params: PaymentIntentCreateParams = {
            "amount": hold.amount,
            "currency": hold.currency.lower(),
            "metadata": {
                "payment_id": str(hold.payment_id),
                "booking_id": str(hold.booking_id),
                "reference": self.ids.key(f"payment-{hold.payment_id}"),
            },
            "expand": _EXPAND_CHARGE,
        }
        if hold.stablecoin:
            # Stablecoin payments have no manual capture (Stripe: "Manual capture support:
            # Not supported"): the intent captures when the payer completes it at
            # crypto.stripe.com, a redirect only Stripe.js follows, so it is not confirmed
            # here; the payment is held as captured money. `allowed_payment_method_types`:
            # since API version 2026-09-30.endive `payment_method_types` is read-only.
            params["allowed_payment_method_types"] = [stripe_wallets.CRYPTO]
        elif hold.payment_method:
            params["capture_method"] = "manual"
            # Confirmed server-side: a redirect could not come back to an API call, so only
            # methods that finish without one (cards, Apple Pay, Google Pay) are allowed.
            params["payment_method"] = hold.payment_method
            params["confirm"] = True
            params["automatic_payment_methods"] = {"enabled": True, "allow_redirects": "never"}
            if hold.customer:
                # A recurring charge, the payer absent: the customer's saved method, and
                # `off_session` so a bank wanting authentication declines at once
                # (`authentication_required`) instead of waiting for a payer who is away.
                params["customer"] = hold.customer
                params["off_session"] = True
        else:
            params["capture_method"] = "manual"
            # The client confirms with Stripe.js / the mobile SDK from the client_secret;
            # automatic payment methods let it offer wallets (Apple Pay, Google Pay).
            params["automatic_payment_methods"] = {"enabled": True}
        intent = await self._call(
            "payment_intents.create",
            lambda: self._client.v1.payment_intents.create_async(
                params, options=self._idempotent(idempotency_key)
            ),
        )
        data = intent.to_dict()
        if hold.stablecoin and stripe_wallets.CRYPTO not in (
            data.get("payment_method_types") or []
        ):
            # Stripe drops an allowed type the account cannot take instead of refusing it:
            # an intent the payer could not pay in stablecoins is refused here.
            raise ProviderError(
                "the Crypto payment method is not available on this Stripe account",
                code="crypto_unavailable",
            )
        return stripe_objects.hold_from_intent(data)

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        intent = await self._retrieve_intent(provider_payment_id)
        if intent.status == "requires_confirmation":
            # A payment method is attached but nobody confirmed: we do, under the caller's
            # key, so a retried confirm is replayed rather than charged again.
            intent = await self._call(
                "payment_intents.confirm",
                lambda: self._client.v1.payment_intents.confirm_async(
                    provider_payment_id,
                    {"expand": _EXPAND_CHARGE},
                    options=self._idempotent(idempotency_key),
                ),
            )
        return stripe_objects.hold_from_intent(intent.to_dict())

    async def get_hold(self, ref: HoldRef) -> ProviderHold:
        intent = await self._retrieve_intent(ref.provider_payment_id)
        return stripe_objects.hold_from_intent(intent.to_dict())

    async def capture(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderCapture:
        assert amount > 0, "capture nothing = cancel"
        intent_id = ref.provider_payment_id
        try:
            intent = await self._call(
                "payment_intents.capture",
                lambda: self._client.v1.payment_intents.capture_async(
                    intent_id,
                    {"amount_to_capture": amount, "expand": _EXPAND_CHARGE},
                    options=self._idempotent(idempotency_key),
                ),
            )
        except ProviderError as exc:
            # Already captured under a key Stripe has forgotten (keys live 24 hours): the
            # capture we are asked for exists if the intent shows exactly this amount taken.
            if exc.code != _UNEXPECTED_STATE:
                raise
            hold = await self.get_hold(ref)
            if hold.state is not HoldState.CAPTURED or hold.captured_amount != amount:
                raise
            assert hold.capture_id is not None
            log.info("stripe capture of %s was already done: %s", intent_id, hold.capture_id)
            return ProviderCapture(
                capture_id=hold.capture_id,
                amount=hold.captured_amount,
                fee=hold.fee,
                currency=hold.currency,
            )
        data = intent.to_dict()
        hold = stripe_objects.hold_from_intent(data)
        if hold.currency != currency.upper():
            log.error("stripe intent %s is in %s, not %s", intent_id, hold.currency, currency)
        if hold.state is not HoldState.CAPTURED or hold.capture_id is None:
            raise ProviderError(
                f"capture of {intent_id} left it {intent.status}", code=_UNEXPECTED_STATE
            )
        # amount_received is what Stripe took; a peer that omits it took what we asked.
        received = data.get("amount_received")
        return ProviderCapture(
            capture_id=hold.capture_id,
            amount=int(received) if received is not None else amount,
            fee=hold.fee,
            currency=hold.currency,
        )

    async def cancel(self, *, ref: HoldRef, idempotency_key: str) -> None:
        intent_id = ref.provider_payment_id
        try:
            await self._call(
                "payment_intents.cancel",
                lambda: self._client.v1.payment_intents.cancel_async(
                    intent_id, options=self._idempotent(idempotency_key)
                ),
            )
        except ProviderError as exc:
            # Canceling a canceled intent (our earlier call, or Stripe lapsing the
            # authorisation) is the outcome we want, not an error.
            if exc.code != _UNEXPECTED_STATE:
                raise
            hold = await self.get_hold(ref)
            if hold.state is not HoldState.CANCELED:
                raise
            log.info("stripe intent %s was already canceled", intent_id)

    async def refund(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderRefund:
        assert amount > 0
        refund = await self._call(
            "refunds.create",
            lambda: self._client.v1.refunds.create_async(
                {
                    "payment_intent": ref.provider_payment_id,
                    "amount": amount,
                    "expand": ["balance_transaction"],
                },
                options=self._idempotent(idempotency_key),
            ),
        )
        data = refund.to_dict()
        # Card refunds are `succeeded` at once; `pending` ones finish later (charge.refunded).
        if data.get("status") in ("failed", "canceled"):
            raise ProviderError(
                f"refund {data.get('id')} {data.get('status')}: {data.get('failure_reason')}",
                code=str(data.get("failure_reason") or data.get("status")),
            )
        if str(data.get("currency", "")).upper() != currency.upper():
            log.error(
                "stripe refund %s is in %s, not %s", data.get("id"), data["currency"], currency
            )
        return ProviderRefund(
            refund_id=str(data["id"]),
            amount=int(data["amount"]),
            fee_refunded=-(stripe_objects.balance_fee(data.get("balance_transaction")) or 0),
        )

    # --- saved payment methods (SetupProvider) ------------------------------------------

    async def create_setup(self, *, reference: str, email: str) -> ProviderSetup:
        customer = await self._call(
            "customers.create",
            lambda: self._client.v1.customers.create_async(
                {"email": email, "metadata": {"reference": self.ids.key(reference)}},
                options=self._idempotent(f"{reference}-customer"),
            ),
        )
        params: SetupIntentCreateParams = {
            "customer": str(customer.id),
            "usage": "off_session",
            # Cards: what a manual-capture (escrow) intent can hold off-session.
            "allowed_payment_method_types": ["card"],
            "metadata": {"reference": self.ids.key(reference)},
        }
        setup = await self._call(
            "setup_intents.create",
            lambda: self._client.v1.setup_intents.create_async(
                params, options=self._idempotent(f"{reference}-setup")
            ),
        )
        return stripe_objects.setup_of(setup.to_dict())

    async def get_setup(self, setup_id: str, *, reference: str) -> ProviderSetup:
        setup = await self._call(
            "setup_intents.retrieve",
            lambda: self._client.v1.setup_intents.retrieve_async(setup_id),
        )
        return stripe_objects.setup_of(setup.to_dict())

    # --- payouts (Connect transfers) ---------------------------------------------------

    async def send_payout(self, order: PayoutOrder) -> ProviderTransfer:
        assert order.amount > 0
        transfer = await self._call(
            "transfers.create",
            lambda: self._client.v1.transfers.create_async(
                {
                    "amount": order.amount,
                    "currency": order.currency.lower(),
                    "destination": order.destination,
                    "transfer_group": self.ids.key(order.idempotency_key),
                    "metadata": {
                        "payout_id": str(order.payout_id),
                        "reference": self.ids.key(order.idempotency_key),
                    },
                },
                options=self._idempotent(order.idempotency_key),
            ),
        )
        return stripe_objects.transfer_of(transfer.to_dict())

    async def find_payout(self, order: PayoutOrder) -> ProviderTransfer | None:
        # The transfer group is ours and unique per payout, so listing by it finds the
        # transfer a timed-out call may have made, without sending a second one.
        listed = await self._call(
            "transfers.list",
            lambda: self._client.v1.transfers.list_async(
                {"transfer_group": self.ids.key(order.idempotency_key), "limit": 10}
            ),
        )
        reference = self.ids.key(order.idempotency_key)
        found = [
            t
            for t in (item.to_dict() for item in listed.data)
            if (t.get("metadata") or {}).get("reference") == reference
        ]
        if not found:
            return None
        if len(found) > 1:
            # Cannot happen while every create carries `payout-{id}`; if it does, a human
            # must look (the worker was paid more than once).
            log.error(
                "payout %s has %d Stripe transfers: %s",
                order.payout_id,
                len(found),
                [t["id"] for t in found],
            )
        return stripe_objects.transfer_of(min(found, key=lambda t: int(t.get("created") or 0)))

    # --- Connect -------------------------------------------------------------------------

    async def create_connected_account(self, *, worker_id: int, email: str) -> str:
        account = await self._call(
            "accounts.create",
            lambda: self._client.v1.accounts.create_async(
                {
                    "type": "express",
                    "email": email,
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {
                        "worker_id": str(worker_id),
                        "reference": self.ids.key(f"worker-{worker_id}"),
                    },
                },
                options=self._idempotent(f"connect-account-{worker_id}"),
            ),
        )
        return str(account.id)

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> str:
        # No idempotency key: a link is single-use and short-lived, and a second one is
        # harmless (the first simply expires).
        link = await self._call(
            "account_links.create",
            lambda: self._client.v1.account_links.create_async(
                {
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            ),
        )
        return str(link.url)

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str
    ) -> ProviderRefund:
        # A connected account that cannot cover the reversal makes Stripe answer 400
        # (InvalidRequestError): a ProviderError with Stripe's code, so the caller records
        # the worker's negative balance instead.
        assert amount > 0
        reversal = await self._call(
            "transfers.reversals.create",
            lambda: self._client.v1.transfers.reversals.create_async(
                transfer_id, {"amount": amount}, options=self._idempotent(idempotency_key)
            ),
        )
        return ProviderRefund(refund_id=str(reversal.id), amount=int(reversal.amount))

    # --- payment method domains (PaymentMethodDomainProvider) ------------------------------

    async def register_domain(
        self, domain_name: str, *, idempotency_key: str
    ) -> PaymentMethodDomain:
        created = await self._call(
            "payment_method_domains.create",
            lambda: self._client.v1.payment_method_domains.create_async(
                {"domain_name": domain_name}, options=self._idempotent(idempotency_key)
            ),
        )
        return stripe_wallets.domain(created.to_dict())

    async def list_domains(self, *, limit: int) -> list[PaymentMethodDomain]:
        assert limit > 0
        domains: list[PaymentMethodDomain] = []

        def page(after: str | None) -> Awaitable[Any]:
            params: dict[str, Any] = {"limit": min(stripe_wallets.MAX_PAGE, limit - len(domains))}
            if after is not None:
                params["starting_after"] = after
            return self._client.v1.payment_method_domains.list_async(params)  # type: ignore[arg-type]

        async for items in self._pages("payment_method_domains.list", page):
            domains += [stripe_wallets.domain(item) for item in items]
            if len(domains) >= limit:
                break
        return domains

    # --- chargeback evidence (EvidenceSubmitter) -------------------------------------------

    async def submit_evidence(
        self, *, dispute_id: str, evidence: ChargebackEvidence, idempotency_key: str
    ) -> None:
        # submit=True: sent to the bank now, not staged; Stripe moves the dispute to
        # under_review and refuses any later update.
        params: Any = {"evidence": stripe_evidence(evidence), "submit": True}
        try:
            await self._call(
                "disputes.update",
                lambda: self._client.v1.disputes.update_async(
                    dispute_id, params, options=self._idempotent(idempotency_key)
                ),
            )
        except ProviderError:
            # Submitted already, by a call of ours whose answer was lost and whose key
            # Stripe has forgotten (24 hours): the dispute says so.
            dispute = await self._call(
                "disputes.retrieve",
                lambda: self._client.v1.disputes.retrieve_async(dispute_id),
            )
            details = dispute.to_dict().get("evidence_details") or {}
            if not int(details.get("submission_count") or 0):
                raise
            log.info("stripe dispute %s had its evidence submitted already", dispute_id)

    # --- webhooks --------------------------------------------------------------------------

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        # The platform endpoint's secret, and the Connect endpoint's: events on connected
        # accounts (account.updated) come from an endpoint of their own, signed with its
        # own secret, to the same URL.
        candidates = [
            s
            for s in (
                self._settings.stripe_webhook_secret,
                self._settings.stripe_connect_webhook_secret,
            )
            if s
        ]
        if not candidates:
            raise InvalidSignatureError("STRIPE_WEBHOOK_SECRET is not set")
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        error: Exception | None = None
        for secret in candidates:
            try:
                stripe.WebhookSignature.verify_header(
                    body, signature, secret, self._settings.stripe_webhook_tolerance_seconds
                )
                return await self.translate_event(body)
            # A malformed header ("t=²", non-ASCII v1=) is a bad signature too, not a 500.
            except (stripe.SignatureVerificationError, ValueError, TypeError) as exc:
                error = exc
        raise InvalidSignatureError(str(error)) from error

    async def translate_event(self, body: bytes) -> ProviderEvent:
        return stripe_events.translate_body(body, self.ids)

    # --- plumbing ------------------------------------------------------------------------

    async def _retrieve_intent(self, intent_id: str) -> stripe.PaymentIntent:
        return await self._call(
            "payment_intents.retrieve",
            lambda: self._client.v1.payment_intents.retrieve_async(
                intent_id, {"expand": _EXPAND_CHARGE}
            ),
        )

    # --- statements (StatementProvider) ---------------------------------------------

    async def statement(self, since: datetime, until: datetime) -> list[StatementLine]:
        """Balance transactions created in [since, until), every page."""
        lines: list[StatementLine] = []

        def page(after: str | None) -> Awaitable[Any]:
            params = stripe_statements.list_params(since, until, after)
            return self._client.v1.balance_transactions.list_async(params)  # type: ignore[arg-type]

        async for items in self._pages("balance_transactions.list", page):
            lines += [stripe_statements.line(txn) for txn in items]
        return lines

    async def _pages(
        self, operation: str, page: Callable[[str | None], Awaitable[Any]]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The items of a Stripe list, a page at a time: `page(after)` asks for the page
        after the object `after` (None: the first), until Stripe says there are no more."""
        after: str | None = None
        while True:
            found = await self._call(operation, lambda: page(after))  # noqa: B023
            data = found.to_dict()
            items = data.get("data") or []
            yield items
            if not data.get("has_more") or not items:
                return
            after = str(items[-1]["id"])

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """One Stripe call: 429s retried with backoff, errors translated to base's."""
        attempt = 0
        while True:
            try:
                result = await call()
            except stripe.RateLimitError as exc:
                if attempt >= self._rate_limit_retries:
                    log.warning(
                        "stripe %s still rate limited after %d retries (request %s)",
                        operation,
                        attempt,
                        exc.request_id,
                    )
                    raise ProviderUnavailableError(
                        f"Stripe rate limit on {operation}: {exc.user_message}"
                    ) from exc
                attempt += 1
                delay = min(
                    self._rate_limit_base_delay_seconds * 2 ** (attempt - 1),
                    RATE_LIMIT_MAX_DELAY_SECONDS,
                )
                # Jitter so that many workers throttled together do not retry in step.
                delay *= random.uniform(0.5, 1.0)
                log.info(
                    "stripe %s rate limited (request %s): retry %d in %.2fs",
                    operation,
                    exc.request_id,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except stripe.StripeError as exc:
                raise _translate_error(operation, exc) from exc
            response = getattr(result, "last_response", None)
            log.debug("stripe %s ok (request %s)", operation, getattr(response, "request_id", None))
            return result


def _translate_error(operation: str, exc: stripe.StripeError) -> Exception:
    message = exc.user_message or type(exc).__name__
    status = exc.http_status
    log.warning(
        "stripe %s failed: %s %s (request %s, HTTP %s, code %s)",
        operation,
        type(exc).__name__,
        message,
        exc.request_id,
        status,
        exc.code,
    )
    if isinstance(exc, stripe.CardError):
        error = exc.error
        decline_code = getattr(error, "decline_code", None) if error is not None else None
        return PaymentDeclinedError(message, code=decline_code or exc.code or "card_declined")
    if isinstance(exc, stripe.APIConnectionError):
        # Timeout or connection failure: Stripe may or may not have acted.
        return ProviderUnavailableError(f"Stripe unreachable on {operation}: {message}")
    if isinstance(exc, stripe.APIError) and (
        status is None or status < 400 or status >= 500 or status == 409
    ):
        # 5xx (after the SDK's retries), a 409 conflict with a concurrent request under the
        # same key, or an answer we could not read: the outcome is unknown.
        return ProviderUnavailableError(f"Stripe error on {operation}: {message}")
    # InvalidRequestError, IdempotencyError, AuthenticationError, PermissionError, ...:
    # Stripe answered and refused.
    error_type = getattr(exc.error, "type", None) if exc.error is not None else None
    return ProviderError(message, code=exc.code or error_type or type(exc).__name__)


if TYPE_CHECKING:

    def _implements(provider: StripeProvider) -> StripeProtocols:
        # mypy checks here that StripeProvider satisfies the protocols.
        return provider
