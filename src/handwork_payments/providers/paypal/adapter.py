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
- create_setup / get_setup (Vault v3, recurring schedules): POST /v3/vault/setup-tokens;
  GET /v3/vault/setup-tokens/{id} and, once the payer approved, POST
  /v3/vault/payment-tokens (VAULTED already: GET /v3/vault/payment-tokens?customer_id=).
  A hold with `customer` is an order paid with the payment token (`vault_id`), authorised
  at creation (POST .../authorize when PayPal leaves it APPROVED).
- send_payout / send_payout_batch: POST /v1/payments/payouts, then GET
  /v1/payments/payouts/{batch id} for the item ids and statuses. A reused sender_batch_id
  refused with a link to its batch (in `links`, or in a detail) answers that batch; refused
  without one it is ProviderUnavailableError: the batch may be paid, so never a refusal.
- find_payout: the same POST again (same PayPal-Request-Id and sender_batch_id), or GET the
  batch when its id is known.
- parse_event: POST /v1/notifications/verify-webhook-signature ("api") or the offline check,
  then translate_event.
- submit_evidence: POST /v1/customer/disputes/{id}/provide-evidence (multipart, an `input`
  JSON part; see `evidence`).
- translate_event: no verification; GET the capture / authorisation when the event does not
  name the order.

Every mutating call carries `PayPal-Request-Id` = our idempotency key: PayPal answers a repeat
with the first outcome and acts once. Payouts also carry our `sender_batch_id`, which PayPal
refuses to pay twice within 30 days even when the request id is forgotten. HTTP, tokens and
error mapping: `client`; reading orders and payout items: `orders`, `payouts`; verifying and
translating webhook deliveries: `webhooks`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from handwork_payments.kit.money import normalize_currency
from handwork_payments.providers import currencies
from handwork_payments.providers.base import (
    ChargebackEvidence,
    EvidenceSubmitter,
    HoldRef,
    NewHold,
    PaymentProvider,
    PayoutOrder,
    ProviderCapture,
    ProviderHold,
    ProviderIds,
    ProviderRefund,
    ProviderSetup,
    ProviderTransfer,
    ProviderUnavailableError,
    SetupProvider,
    StatementLine,
    UnlinkedDuplicateBatchError,
)
from handwork_payments.providers.paypal import evidence as paypal_evidence
from handwork_payments.providers.paypal import statements, vault
from handwork_payments.providers.paypal.client import (
    MAX_RATE_LIMIT_RETRIES,
    PayPalClient,
    PayPalDeclinedError,
    PayPalError,
)
from handwork_payments.providers.paypal.client import segment as _segment
from handwork_payments.providers.paypal.events import (
    CertFetcher,
    related_ids,
)
from handwork_payments.providers.paypal.orders import (
    authorization_state,
    capture_fee,
    currency_of,
    fee_refunded,
    hold_from_order,
    minor,
    parse_time,
    payments_of,
    paypal_money,
    paypal_value,
)
from handwork_payments.providers.paypal.payouts import (
    MAX_PAYOUT_ITEMS,
    MAX_PAYOUT_PAGES,
    PAYOUT_PAGE_SIZE,
    duplicate_batch_id,
    is_duplicate_batch,
    sender_item_id,
    transfer_of,
    transfers_for,
)
from handwork_payments.providers.paypal.webhooks import PayPalWebhooks
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)


class PayPalProvider(PayPalWebhooks):
    """The PaymentProvider for PayPal's REST API. Construct with the settings; `transport`
    and `fetch_cert` exist for tests (a validating transport, a throwaway certificate)."""

    name = "paypal"
    live = True
    currency_rules = currencies.PAYPAL

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        fetch_cert: CertFetcher | None = None,
        rate_limit_backoff_seconds: float = 0.5,
        max_rate_limit_retries: int = MAX_RATE_LIMIT_RETRIES,
        ids: ProviderIds | None = None,
    ) -> None:
        self._settings = settings
        self.ids = ids or ProviderIds.configured(settings.provider_id_prefix)
        self.client = PayPalClient(
            settings,
            transport=transport,
            rate_limit_backoff_seconds=rate_limit_backoff_seconds,
            max_rate_limit_retries=max_rate_limit_retries,
        )
        self.api_base = self.client.api_base
        self._call = self.client.call
        self._fetch_cert = fetch_cert or self.client.fetch_cert

    @property
    def token_fetches(self) -> int:
        return self.client.token_fetches

    async def aclose(self) -> None:
        await self.client.aclose()

    async def create_hold(self, hold: NewHold, *, idempotency_key: str) -> ProviderHold:
        assert hold.amount > 0, "a hold is for a positive amount"
        currency = normalize_currency(hold.currency)
        # Our payment id, in the form PayPal echoes back on captures, refunds and disputes;
        # invoice_id must be unique per payment (PayPal may refuse a reused one), across
        # installations too: hence the prefix.
        reference = self.ids.key(f"payment-{hold.payment_id}")
        experience: dict[str, Any] = {
            "user_action": "PAY_NOW",
            "shipping_preference": "NO_SHIPPING",  # a service booking ships nothing
        }
        if hold.return_url:
            experience["return_url"] = hold.return_url
        if hold.cancel_url:
            experience["cancel_url"] = hold.cancel_url
        source = (
            vault.vaulted_source(hold.payment_method)
            if hold.customer and hold.payment_method
            else {"paypal": {"experience_context": experience}}
        )
        body = {
            "intent": "AUTHORIZE",
            "purchase_units": [
                {
                    "reference_id": f"booking-{hold.booking_id}",
                    "description": f"Booking {hold.booking_id}",
                    "custom_id": reference,
                    "invoice_id": reference,
                    "amount": paypal_money(hold.amount, currency),
                }
            ],
            "payment_source": source,
        }
        order = await self._act("/v2/checkout/orders", body, idempotency_key)
        if hold.customer and str(order.get("status", "")).upper() == "APPROVED":
            # A vaulted payer's order PayPal did not authorise at creation: nobody is there
            # to approve it, so authorise it now (its own key, derived from the hold's).
            return await self.confirm_hold(
                provider_payment_id=str(order["id"]),
                payer_id=None,
                idempotency_key=f"{idempotency_key}-authorize",
            )
        return hold_from_order(order, amount=hold.amount, currency=currency)

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        path = f"/v2/checkout/orders/{_segment(provider_payment_id)}/authorize"
        try:
            order = await self._act(path, {}, idempotency_key)
        except PayPalError as exc:
            # Authorised already (by an earlier call whose answer we lost, under another
            # key): the order holds the authorisation; answer it rather than fail.
            if exc.code in ("ORDER_ALREADY_AUTHORIZED", "ORDER_COMPLETED_OR_VOIDED"):
                return hold_from_order(await self._get_order(provider_payment_id))
            if exc.code != "ORDER_NOT_APPROVED":
                raise
            # PayPal "returns the latest status of the previous request" with a request id:
            # an execute refused before the payer approved may be refused again from that
            # memory after they did. The order itself says whether that refusal still holds.
            current = await self._get_order(provider_payment_id)
            status = str(current.get("status", "")).upper()
            if status == "COMPLETED":
                return hold_from_order(current)
            if status != "APPROVED":
                raise
            order = await self._act(path, {}, f"{idempotency_key}-approved")
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
        return hold_from_order(order)

    async def get_hold(self, ref: HoldRef) -> ProviderHold:
        order = await self._get_order(ref.provider_payment_id)
        extra: dict[str, Any] | None = None
        if ref.authorization_id and ref.authorization_id not in {
            a.get("id") for a in payments_of(order)["authorizations"]
        }:
            # A reauthorisation may not be listed on the order: ask for it directly.
            extra = await self._call(
                "GET", f"/v2/payments/authorizations/{_segment(ref.authorization_id)}"
            )
        return hold_from_order(
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
            capture = await self._act(path, body, idempotency_key)
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
            capture_id=str(capture["id"]),
            amount=minor(capture.get("amount"), amount) or amount,
            fee=capture_fee(capture),
            currency=currency_of(capture.get("amount"), "") or None,
        )

    async def cancel(self, *, ref: HoldRef, idempotency_key: str) -> None:
        authorization_id = ref.authorization_id
        if authorization_id is None:
            order = await self._get_order(ref.provider_payment_id)
            active = [
                a
                for a in payments_of(order)["authorizations"]
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
            await self._call("POST", path, request_id=self.ids.key(idempotency_key))
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
        refund = await self._act(path, {"amount": paypal_money(amount, currency)}, idempotency_key)
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
            refund_id=str(refund["id"]),
            amount=minor(refund.get("amount"), amount) or amount,
            fee_refunded=fee_refunded(refund),
        )

    async def submit_evidence(
        self, *, dispute_id: str, evidence: ChargebackEvidence, idempotency_key: str
    ) -> None:
        # PayPal-Request-Id makes a repeat (after a lost answer) replay the first outcome.
        await self._call(
            "POST",
            f"/v1/customer/disputes/{_segment(dispute_id)}/provide-evidence",
            parts={"input": paypal_evidence.input_part(evidence)},
            request_id=self.ids.key(idempotency_key),
        )

    async def statement(self, since: datetime, until: datetime) -> list[StatementLine]:
        """Transaction Search over [since, until): spans of 31 days at most, every page."""
        lines: list[StatementLine] = []
        for start, end in statements.windows(since, until):
            page, pages = 1, 1
            while page <= pages:
                found = await self._call(
                    "GET",
                    "/v1/reporting/transactions",
                    params=statements.search_params(start, end, page),
                )
                lines += [statements.line(d) for d in found.get("transaction_details") or []]
                pages = int(found.get("total_pages") or 1)
                page += 1
        return lines

    async def reauthorize(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderHold:
        """A new authorisation for `amount` after the 3-day honour period (PayPal allows it
        once, days 4-29). The answer carries the new authorisation id, which later captures
        and voids must use; the 29-day limit of the original still applies (capture_by)."""
        authorization_id = ref.authorization_id or await self._authorization_id(ref)
        path = f"/v2/payments/authorizations/{_segment(authorization_id)}/reauthorize"
        auth = await self._act(path, {"amount": paypal_money(amount, currency)}, idempotency_key)
        related = related_ids(auth)
        state, failure = authorization_state(auth)
        return ProviderHold(
            provider_payment_id=str(related.get("order_id") or ref.provider_payment_id),
            state=state,
            amount=minor(auth.get("amount"), amount) or amount,
            currency=currency_of(auth.get("amount"), normalize_currency(currency)),
            authorization_id=str(auth["id"]),
            capture_by=parse_time(auth.get("expiration_time")),
            failure_message=failure,
        )

    # ----------------------------------------------------------------------- Vault v3

    async def create_setup(self, *, reference: str, email: str) -> ProviderSetup:
        """A setup token for our `reference` (the payer's email is PayPal's to know)."""
        body = vault.setup_token_body(
            self._settings.paypal_vault_return_url, self._settings.paypal_vault_cancel_url
        )
        token = await self._call(
            "POST",
            vault.SETUP_TOKENS,
            json_body=body,
            request_id=self.ids.key(f"{reference}-setup-token"),
        )
        return vault.pending_setup(token)

    async def get_setup(self, setup_id: str, *, reference: str) -> ProviderSetup:
        token = await self._call("GET", f"{vault.SETUP_TOKENS}/{_segment(setup_id)}")
        if vault.status(token) == vault.VAULTED:
            params: dict[str, str | int] = {
                "customer_id": vault.customer_id(token),
                "page_size": 64,
            }
            listing = await self._call("GET", vault.PAYMENT_TOKENS, params=params)
            return vault.found_setup(setup_id, listing)
        if vault.status(token) != vault.APPROVED:
            return vault.pending_setup(token)
        payment_token = await self._call(
            "POST",
            vault.PAYMENT_TOKENS,
            json_body=vault.payment_token_body(setup_id),
            request_id=self.ids.key(f"{reference}-payment-token"),
        )
        return vault.saved_setup(setup_id, payment_token)

    # ----------------------------------------------------------------------- hold helpers

    async def _act(
        self, path: str, body: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        """A keyed POST that makes or changes a resource, answered with all of it
        (`Prefer: return=representation`), not PayPal's minimal answer."""
        return await self._call(
            "POST",
            path,
            json_body=body,
            request_id=self.ids.key(idempotency_key),
            representation=True,
        )

    async def _get_order(self, order_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v2/checkout/orders/{_segment(order_id)}")

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
        return ProviderCapture(
            capture_id=hold.capture_id,
            amount=hold.captured_amount,
            fee=hold.fee,
            currency=hold.currency,
        )

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
                "sender_batch_id": self.ids.key(batch_key),
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
                    "sender_item_id": self.ids.key(order.idempotency_key),
                    "note": f"Handwork payout {order.payout_id}",
                }
                for order in orders
            ],
        }
        try:
            created = await self._call(
                "POST", "/v1/payments/payouts", json_body=body, request_id=self.ids.key(batch_key)
            )
            header = created.get("batch_header") or {}
            batch_id = str(header["payout_batch_id"])
        except PayPalError as exc:
            if not is_duplicate_batch(exc):
                raise
            duplicate = duplicate_batch_id(exc)
            if duplicate is None:
                # PayPal has this sender_batch_id already - it may have paid it - and did
                # not say which batch it is (a bare "Duplicate batch request" has been seen
                # in the wild). Never a refusal, or the caller would hand the money back and
                # pay it again: the outcome is unknown until the batch's item webhooks (they
                # name our sender_item_id) or an operator settle it.
                raise UnlinkedDuplicateBatchError(
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
        return transfers_for(orders, batch_id, header, items, self.ids)

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
            reference = self.ids.key(order.idempotency_key)
            item = next((i for i in items if sender_item_id(i) == reference), None)
            return transfer_of(item, header) if item is not None else None
        return await self.send_payout(order)

    async def find_batch(
        self, batch_id: str, orders: Sequence[PayoutOrder]
    ) -> list[ProviderTransfer | None]:
        """GET /v1/payments/payouts/{batch id} once (paged), every order matched in it."""
        header, items = await self._get_batch(batch_id)
        by_sender = {sender_item_id(i): i for i in items}
        found = (by_sender.get(self.ids.key(order.idempotency_key)) for order in orders)
        return [transfer_of(item, header) if item is not None else None for item in found]

    async def get_payout_batch(self, batch_id: str) -> list[ProviderTransfer]:
        """Every item of a batch, for polling."""
        header, items = await self._get_batch(batch_id)
        return [transfer_of(item, header) for item in items]

    async def get_payout_item(self, payout_item_id: str) -> ProviderTransfer:
        item = await self._call("GET", f"/v1/payments/payouts-item/{_segment(payout_item_id)}")
        return transfer_of(item, {})

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


if TYPE_CHECKING:

    def _implements(
        provider: PayPalProvider,
    ) -> tuple[PaymentProvider, SetupProvider, EvidenceSubmitter]:
        # mypy checks here that PayPalProvider satisfies the protocols.
        return provider, provider, provider
