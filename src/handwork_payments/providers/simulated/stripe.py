"""The Stripe simulator: manual-capture PaymentIntents with their charges and refunds,
transfers to connected accounts, Stripe Connect (ConnectProvider), and what Stripe.js does
in the buyer's browser (confirming with a test card, 3-D Secure).

Test payment methods: `pm_card_visa` (authorised), `pm_card_chargeDeclined` (declined),
`pm_card_authenticationRequired` (3-D Secure, see `authenticate`), Radar's
`pm_card_riskLevelElevated` / `pm_card_riskLevelHighest` (authorised, with that risk
level); wallet cards `pm_card_visa_apple_pay`, `pm_card_visa_google_pay`, `pm_card_link`
(authorised) and `pm_card_{apple_pay,google_pay,link}_chargeDeclined`; `pm_crypto_usdc`
pays a stablecoin intent, captured at once; `pm_card_chargeCustomerFail` saves with a
SetupIntent, then declines. Registered payment method domains are kept too. Objects are
stored in Stripe's JSON shape (stripe_objects.py) so that events built from them look like
the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.db import transaction
from handwork_payments.kit import fee_rules
from handwork_payments.models import SimulatedObject
from handwork_payments.providers import currencies, stripe_events, stripe_statements, stripe_wallets
from handwork_payments.providers.base import (
    HoldRef,
    NewHold,
    PaymentDeclinedError,
    PaymentMethodDomain,
    PayoutOrder,
    ProviderError,
    ProviderEvent,
    ProviderHold,
    ProviderRefund,
    ProviderSetup,
    ProviderTransfer,
    StatementLine,
    StripeProtocols,
)
from handwork_payments.providers.simulated import events
from handwork_payments.providers.simulated.events import SIMULATOR_WEBHOOK_SECRET, Delivery
from handwork_payments.providers.simulated.store import (
    ACCOUNT,
    BALANCE_TRANSACTION,
    CHARGE,
    CUSTOMER,
    PAYMENT_INTENT,
    PAYMENT_METHOD_DOMAIN,
    REFUND,
    SETUP_INTENT,
    TRANSFER,
    TRANSFER_REVERSAL,
    Json,
    UnknownObjectError,
    check_same_currency,
    hold_from_json,
    hold_json,
    save,
    stripe_id,
    transfer_from_json,
    transfer_json,
)
from handwork_payments.providers.simulated.stripe_disputes import StripeBank
from handwork_payments.providers.simulated.stripe_objects import (
    AUTHORISING_CARDS,
    DECLINING,
    PM_AUTHENTICATION_REQUIRED,
    PM_CHARGE_CUSTOMER_FAIL,
    PM_CRYPTO,
    PM_DECLINED,
    SETUP_METHODS,
    STRIPE_CONNECT_LINK_BASE,
    balance_transaction,
    charge,
    check_method_allowed,
    check_payment_method,
    connected_account,
    declined_error,
    new_customer,
    new_intent,
    new_refund,
    new_reversal,
    new_setup_intent,
    new_transfer,
    payment_method_domain,
)
from handwork_payments.providers.stripe_objects import hold_from_intent, setup_of, transfer_of

Move = Literal["capture", "refund"]

# What a move of money requires of the intent: its status, Stripe's refusal otherwise
# ("This PaymentIntent {refusal} a status of {its status}"), and the amount's field name.
_MOVES: dict[Move, tuple[str, str, str]] = {
    "capture": ("requires_capture", "could not be captured because it has", "amount_to_capture"),
    "refund": ("succeeded", "has no captured charge to refund: it has", "amount"),
}


class SimulatedStripe(StripeBank):
    """Stripe behind the PaymentProvider and ConnectProvider protocols, plus the buyer's
    side (`client_confirm`, `authenticate`) and event building. No payout batches and no
    reauthorisation: Stripe has neither."""

    name = "stripe"
    currency_rules = currencies.STRIPE
    amount_not_positive_code = "parameter_invalid_integer"
    amount_too_large_code = "amount_too_large"
    currency_invalid_code = "parameter_invalid"
    statement_kind = BALANCE_TRANSACTION

    @property
    def webhook_secret(self) -> str:
        return self.settings.stripe_webhook_secret or SIMULATOR_WEBHOOK_SECRET

    def _missing(self, kind: str, object_id: str) -> UnknownObjectError:
        return UnknownObjectError(f"No such {kind}: '{object_id}'", code="resource_missing")

    def _statement_line(self, data: Mapping[str, Any]) -> StatementLine:
        return stripe_statements.line(data)

    # --- the PaymentProvider protocol ---------------------------------------------------

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        # Retrieving the intent is a read (Stripe applies no idempotency to GETs): what the
        # browser did since (confirm, 3-D Secure) must show, never a stored answer.
        async def read(session: AsyncSession) -> Json:
            return await self._intent_hold(session, provider_payment_id, lock=False)

        return hold_from_json(await self._call("confirm_hold", read))

    async def get_hold(self, ref: HoldRef) -> ProviderHold:
        async def read(session: AsyncSession) -> Json:
            return await self._intent_hold(session, ref.provider_payment_id, lock=False)

        return hold_from_json(await self._call("get_hold", read))

    async def find_payout(self, order: PayoutOrder) -> ProviderTransfer | None:
        """A pure look-up by the payout's own key, reporting the transfer as it is now (a
        reversal may have followed)."""

        async def read(session: AsyncSession) -> Json:
            record = await self._key_record(session, order.idempotency_key)
            if record is None or record.data.get("operation") != "send_payout":
                return {}
            result = record.data.get("result")
            if result is None:
                return {}
            row = await self._load(session, result["transfer_id"], TRANSFER)
            return transfer_json(transfer_of(row.data))

        found = await self._call("find_payout", read)
        return transfer_from_json(found) if found else None

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        async def parse() -> ProviderEvent:
            return stripe_events.parse(
                headers,
                body,
                self.webhook_secret,
                self.settings.stripe_webhook_tolerance_seconds,
                self.ids,
            )

        return await self._faulty("parse_event", parse)

    async def translate_event(self, body: bytes) -> ProviderEvent:
        return stripe_events.translate_body(body, self.ids)

    # --- PaymentIntents ------------------------------------------------------------------

    async def _open_hold(self, session: AsyncSession, hold: NewHold) -> Json:
        if hold.payment_method is not None:
            # Stripe checks the method before it creates anything.
            check_payment_method(hold.payment_method)
        if hold.stablecoin and hold.currency.upper() != "USD":
            # Stablecoin payments settle in USD only.
            raise ProviderError(
                f"The payment method type crypto does not support currency {hold.currency}.",
                code="payment_intent_invalid_parameter",
            )
        intent = new_intent(
            hold.payment_id,
            hold.booking_id,
            hold.amount,
            hold.currency,
            self.ids.key(f"payment-{hold.payment_id}"),
            stablecoin=hold.stablecoin,
        )
        if hold.customer is not None:
            await self._check_attached(session, hold.customer, hold.payment_method)
            intent.update(customer=hold.customer, off_session=True)
        row = self._insert(session, intent["id"], PAYMENT_INTENT, intent)
        if hold.payment_method is not None:
            # Confirmed before it is written: the intent is inserted once, as it ends up.
            await self._confirm_intent(session, row, hold.payment_method)
        await session.flush()
        return await self._intent_hold(session, intent["id"], lock=False)

    async def _confirm_intent(
        self, session: AsyncSession, row: SimulatedObject, payment_method: str
    ) -> None:
        intent = row.data
        check_payment_method(payment_method)
        check_method_allowed(intent, payment_method)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise ProviderError(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent["payment_method"] = payment_method
        intent["last_payment_error"] = None
        if payment_method in AUTHORISING_CARDS:
            await self._authorise_intent(session, row)
        elif payment_method == PM_CRYPTO:
            await self._collect_intent(session, row)
        elif payment_method == PM_CHARGE_CUSTOMER_FAIL:
            self._decline_intent(session, row)
        elif payment_method == PM_AUTHENTICATION_REQUIRED and intent.get("off_session"):
            # Off-session, nobody can do 3-D Secure: Stripe declines at once.
            self._decline_intent(session, row, code="authentication_required")
        elif payment_method == PM_AUTHENTICATION_REQUIRED:
            intent["status"] = "requires_action"
            intent["next_action"] = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect", "source": "src_simulated"},
            }
            save(row, intent)
        else:
            assert payment_method in DECLINING
            self._decline_intent(session, row)

    def _decline_intent(
        self, session: AsyncSession, row: SimulatedObject, code: str = "card_declined"
    ) -> None:
        """The card is declined: a failed charge, the error kept on the intent (committed
        with it, as Stripe keeps it) and PaymentDeclinedError raised."""
        intent = row.data
        charge_id = stripe_id("ch")
        self._insert(
            session,
            charge_id,
            CHARGE,
            charge(intent, charge_id, status="failed", failure_code=code),
        )
        error = declined_error(charge_id, str(intent["payment_method"]))
        if code != "card_declined":
            error.update(code=code, decline_code=code)
        intent.update(
            status="requires_payment_method", last_payment_error=error, latest_charge=charge_id
        )
        save(row, intent)
        raise PaymentDeclinedError("Your card was declined.", code=code)

    async def _authorise_intent(self, session: AsyncSession, row: SimulatedObject) -> None:
        intent = row.data
        charge_id = stripe_id("ch")
        self._insert(session, charge_id, CHARGE, charge(intent, charge_id, status="succeeded"))
        intent.update(
            status="requires_capture",
            amount_capturable=intent["amount"],
            latest_charge=charge_id,
            last_payment_error=None,
            next_action=None,
        )
        save(row, intent)
        await session.flush()

    async def _collect_intent(self, session: AsyncSession, row: SimulatedObject) -> None:
        """The payer paid a stablecoin intent: captured at once (no manual capture for
        crypto), settled in USD on the balance less Stripe's fee."""
        intent = row.data
        amount, currency = int(intent["amount"]), str(intent["currency"])
        charge_id = stripe_id("ch")
        fee = fee_rules.fee(self.settings.simulator_stripe_fees, amount, currency.upper())
        txn_id = self._book(session, "charge", charge_id, amount, fee, currency)
        paid = charge(intent, charge_id, status="succeeded")
        paid.update(captured=True, amount_captured=amount, balance_transaction=txn_id)
        self._insert(session, charge_id, CHARGE, paid)
        intent.update(
            status="succeeded",
            amount_received=amount,
            amount_capturable=0,
            latest_charge=charge_id,
            last_payment_error=None,
            next_action=None,
        )
        save(row, intent)
        await session.flush()

    async def _intent_hold(self, session: AsyncSession, intent_id: str, *, lock: bool) -> Json:
        row = await self._load(session, intent_id, PAYMENT_INTENT, lock=lock)
        # Expanded as the adapter asks Stripe for it: the latest charge, and its balance
        # transaction (which carries the fee).
        intent = dict(row.data)
        if intent.get("latest_charge"):
            latest = dict((await self._load(session, intent["latest_charge"], CHARGE)).data)
            if latest.get("balance_transaction"):
                txn = await self._load(session, latest["balance_transaction"], BALANCE_TRANSACTION)
                latest["balance_transaction"] = txn.data
            intent["latest_charge"] = latest
        return hold_json(hold_from_intent(intent))

    def _book(
        self,
        session: AsyncSession,
        kind: str,
        source: str,
        amount: int,
        fee: int,
        currency: str,
        parent: Json | None = None,
    ) -> str:
        """A line of the platform's balance (its statement); returns its id. `parent`
        ({"transfer": id} or {"charge": id}) is kept as the expanded source would show it."""
        txn = balance_transaction(kind, source, amount, fee, currency, "Stripe processing fees")
        if parent is not None:
            txn["source"] = {"id": source, **parent}
        self._insert(session, txn["id"], BALANCE_TRANSACTION, txn)
        return str(txn["id"])

    async def _intent_to_move(
        self, session: AsyncSession, ref: HoldRef, move: Move, amount: int, currency: str
    ) -> SimulatedObject:
        """The intent `ref` names, locked, when `move` may take
        `amount` of `currency` from it; refused otherwise, in Stripe's words."""
        status, refusal, amount_field = _MOVES[move]
        row = await self._load(session, ref.provider_payment_id, PAYMENT_INTENT, lock=True)
        intent = row.data
        if intent["status"] != status:
            raise ProviderError(
                f"This PaymentIntent {refusal} a status of {intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        check_same_currency(intent["currency"], currency, "parameter_invalid")
        _check_positive(amount, amount_field)
        return row

    async def _capture(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row = await self._intent_to_move(session, ref, "capture", amount, currency)
        intent = row.data
        if amount > int(intent["amount_capturable"]):
            raise ProviderError(
                f"The amount_to_capture ({amount}) is greater than the amount capturable "
                f"({intent['amount_capturable']}).",
                code="amount_too_large",
            )
        charge_row = await self._load(session, intent["latest_charge"], CHARGE, lock=True)
        captured = charge_row.data
        # Stripe's standard pricing, charged on what was captured (SIMULATOR_STRIPE_FEES).
        fee = fee_rules.fee(self.settings.simulator_stripe_fees, amount, currency)
        txn_id = self._book(session, "charge", captured["id"], amount, fee, currency)
        captured.update(captured=True, amount_captured=amount, balance_transaction=txn_id)
        save(charge_row, captured)
        # Capturing less than authorised releases the rest: nothing stays capturable.
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        save(row, intent)
        return {"capture_id": captured["id"], "amount": amount, "fee": fee}

    async def _cancel(self, session: AsyncSession, ref: HoldRef) -> None:
        row = await self._load(session, ref.provider_payment_id, PAYMENT_INTENT, lock=True)
        intent = row.data
        if intent["status"] == "canceled":
            return  # already void: the outcome asked for
        if intent["status"] == "succeeded":
            raise ProviderError(
                "You cannot cancel this PaymentIntent because it has a status of succeeded.",
                code="payment_intent_unexpected_state",
            )
        intent.update(
            status="canceled",
            canceled_at=int(time.time()),
            cancellation_reason="requested_by_customer",
            amount_capturable=0,
            next_action=None,
        )
        save(row, intent)

    async def _refund(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        intent = (await self._intent_to_move(session, ref, "refund", amount, currency)).data
        charge_row = await self._load(session, intent["latest_charge"], CHARGE, lock=True)
        refunded = charge_row.data
        left = int(refunded["amount_captured"]) - int(refunded["amount_refunded"])
        if left == 0:
            raise ProviderError(
                f"Charge {refunded['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount > left:
            raise ProviderError(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                code="amount_too_large",
            )
        refund = new_refund(intent, str(refunded["id"]), amount)
        # Stripe returns none of its processing fee on a refund (provider_fees.py).
        refund["balance_transaction"] = self._book(
            session, "refund", refund["id"], -amount, 0, currency, {"charge": refunded["id"]}
        )
        self._insert(session, refund["id"], REFUND, refund)
        refunded["amount_refunded"] = int(refunded["amount_refunded"]) + amount
        refunded["refunded"] = refunded["amount_refunded"] == refunded["amount_captured"]
        save(charge_row, refunded)
        return {"refund_id": refund["id"], "amount": amount, "fee_refunded": 0}

    # --- saved payment methods (SetupProvider) -------------------------------------------

    async def create_setup(self, *, reference: str, email: str) -> ProviderSetup:
        async def act(session: AsyncSession) -> Json:
            customer = new_customer(email, self.ids.key(reference))
            self._insert(session, customer["id"], CUSTOMER, customer)
            setup = new_setup_intent(customer["id"], self.ids.key(reference))
            self._insert(session, setup["id"], SETUP_INTENT, setup)
            return setup

        params: Json = {"reference": reference, "email": email}
        return setup_of(
            await self._call("create_setup", act, key=f"{reference}-setup", params=params)
        )

    async def get_setup(self, setup_id: str, *, reference: str) -> ProviderSetup:
        return setup_of(await self.object_of(setup_id, SETUP_INTENT))

    async def object_of(self, object_id: str, kind: str) -> Json:
        async def read(session: AsyncSession) -> Json:
            return dict((await self._load(session, object_id, kind)).data)

        return await self._call("get_setup", read)

    async def _check_attached(
        self, session: AsyncSession, customer_id: str, payment_method: str | None
    ) -> None:
        customer = await self._load(session, customer_id, CUSTOMER)
        if payment_method not in customer.data["payment_methods"]:
            raise ProviderError(
                f"The provided PaymentMethod ({payment_method}) is not attached to customer "
                f"{customer_id}.",
                code="payment_method_not_attached",
            )

    async def client_confirm_setup(self, setup_id: str, payment_method: str) -> ProviderSetup:
        """Stripe.js `confirmSetup` with a test card: the card is attached to the setup's
        customer. `pm_card_chargeDeclined` is declined (the setup keeps the error)."""

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, setup_id, SETUP_INTENT, lock=True)
            setup = row.data
            check_payment_method(payment_method)
            if setup["status"] != "requires_payment_method":
                raise ProviderError(
                    "You cannot confirm this SetupIntent because it has a status of "
                    f"{setup['status']}.",
                    code="setup_intent_unexpected_state",
                )
            if payment_method == PM_DECLINED:
                setup["last_setup_error"] = {
                    "type": "card_error",
                    "code": "card_declined",
                    "message": "Your card was declined.",
                }
                save(row, setup)
                raise PaymentDeclinedError("Your card was declined.", code="card_declined")
            if payment_method not in SETUP_METHODS:
                raise ProviderError(
                    f"The simulator sets up {sorted(SETUP_METHODS)} only",
                    code="resource_missing",
                )
            customer = await self._load(session, setup["customer"], CUSTOMER, lock=True)
            attached = customer.data
            attached["payment_methods"] = [*attached["payment_methods"], payment_method]
            save(customer, attached)
            setup.update(status="succeeded", payment_method=payment_method, last_setup_error=None)
            save(row, setup)
            return dict(setup)

        return setup_of(await self._perform(act))

    # --- transfers (payouts to connected accounts) ----------------------------------------

    async def _pay_out(self, session: AsyncSession, order: PayoutOrder, currency: str) -> Json:
        if not order.destination.startswith("acct_"):
            raise ProviderError(
                f"No such destination: '{order.destination}'", code="invalid_destination"
            )
        transfer = new_transfer(order, currency, self.ids.key(order.idempotency_key))
        transfer["balance_transaction"] = self._book(
            session, "transfer", transfer["id"], -order.amount, 0, currency
        )
        self._insert(session, transfer["id"], TRANSFER, transfer)
        return transfer_json(transfer_of(transfer))

    # --- Stripe Connect (ConnectProvider) -----------------------------------------------

    async def create_connected_account(self, *, worker_id: int, email: str) -> str:
        async def act(session: AsyncSession) -> Json:
            account = connected_account(worker_id, email)
            self._insert(session, account["id"], ACCOUNT, account)
            return {"account_id": account["id"]}

        # The key names the worker only, so a changed email still finds the one account.
        result = await self._call(
            "create_connected_account",
            act,
            key=f"connect-account-{worker_id}",
            params={"worker_id": worker_id},
        )
        return str(result["account_id"])

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> str:
        async def act(session: AsyncSession) -> Json:
            await self._load(session, account_id, ACCOUNT)
            return {"url": f"{STRIPE_CONNECT_LINK_BASE}/{account_id}"}

        result = await self._call("create_account_link", act)
        return str(result["url"])

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str
    ) -> ProviderRefund:
        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, transfer_id, TRANSFER, lock=True)
            transfer = row.data
            _check_positive(amount, "amount")
            left = int(transfer["amount"]) - int(transfer["amount_reversed"])
            if amount > left:
                raise ProviderError(
                    f"The reversal amount ({amount}) exceeds what is left of transfer "
                    f"{transfer_id} ({left}).",
                    code="insufficient_funds",
                )
            reversal = new_reversal(transfer, amount)
            reversal["balance_transaction"] = self._book(
                session,
                "transfer_refund",
                reversal["id"],
                amount,
                0,
                transfer["currency"],
                {"transfer": transfer_id},
            )
            self._insert(session, reversal["id"], TRANSFER_REVERSAL, reversal)
            transfer["amount_reversed"] = int(transfer["amount_reversed"]) + amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            reversals = transfer["reversals"]
            reversals["data"].append(reversal)
            reversals["total_count"] = len(reversals["data"])
            save(row, transfer)
            return {"refund_id": reversal["id"], "amount": amount}

        params: Json = {"transfer_id": transfer_id, "amount": amount}
        result = await self._call("reverse_transfer", act, key=idempotency_key, params=params)
        return ProviderRefund(refund_id=result["refund_id"], amount=result["amount"])

    async def complete_onboarding(self, account_id: str) -> Json:
        """The worker finished Stripe's onboarding form: payouts are enabled. Returns the
        account object, ready for `stripe_event("account.updated", ...)`."""
        async with transaction(self.sessions) as session:
            row = await self._load(session, account_id, ACCOUNT, lock=True)
            account = row.data
            account.update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
            save(row, account)
            return dict(account)

    # --- payment method domains (PaymentMethodDomainProvider) ----------------------------

    async def register_domain(
        self, domain_name: str, *, idempotency_key: str
    ) -> PaymentMethodDomain:
        async def act(session: AsyncSession) -> Json:
            # One object per domain name: registering it again answers the one there is.
            found = await self._find(session, PAYMENT_METHOD_DOMAIN, {"domain_name": domain_name})
            if found is not None:
                return dict(found.data)
            domain = payment_method_domain(domain_name)
            self._insert(session, domain["id"], PAYMENT_METHOD_DOMAIN, domain)
            return domain

        params: Json = {"domain_name": domain_name}
        created = await self._call("register_domain", act, key=idempotency_key, params=params)
        return stripe_wallets.domain(created)

    async def list_domains(self, *, limit: int) -> list[PaymentMethodDomain]:
        async def read(session: AsyncSession) -> Json:
            rows = await session.scalars(
                select(SimulatedObject).where(
                    SimulatedObject.provider == self.name,
                    SimulatedObject.kind == PAYMENT_METHOD_DOMAIN,
                )
            )
            ordered = sorted((r.data for r in rows), key=lambda d: (-d["created"], d["id"]))
            return {"data": ordered[:limit]}

        listed = await self._call("list_domains", read)
        return [stripe_wallets.domain(d) for d in listed["data"]]

    # --- what the buyer's browser does (Stripe.js) ----------------------------------------

    async def client_confirm(self, provider_payment_id: str, payment_method: str) -> ProviderHold:
        """Stripe.js confirming the intent with a card. A decline raises
        PaymentDeclinedError (after storing it on the intent, as Stripe does)."""

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT, lock=True)
            await self._confirm_intent(session, row, payment_method)
            return await self._intent_hold(session, provider_payment_id, lock=False)

        return hold_from_json(await self._perform(act))

    async def authenticate(self, provider_payment_id: str, succeed: bool = True) -> ProviderHold:
        """3-D Secure done in the browser: the intent becomes authorised, or, when the
        cardholder failed it, goes back to requires_payment_method with an error (FAILED)."""

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT, lock=True)
            intent = row.data
            if intent["status"] != "requires_action":
                raise ProviderError(
                    "This PaymentIntent does not need authentication: it has a status of "
                    f"{intent['status']}.",
                    code="payment_intent_unexpected_state",
                )
            if succeed:
                await self._authorise_intent(session, row)
            else:
                intent.update(
                    status="requires_payment_method",
                    next_action=None,
                    last_payment_error={
                        "type": "card_error",
                        "code": "payment_intent_authentication_failure",
                        "message": "The provided PaymentMethod has failed authentication. "
                        "You can provide payment_method_data or a new PaymentMethod to "
                        "attempt to fulfill this PaymentIntent again.",
                        "payment_method": {"id": intent["payment_method"]},
                    },
                )
                save(row, intent)
            return await self._intent_hold(session, provider_payment_id, lock=False)

        return hold_from_json(await self._perform(act))

    # --- objects and events ---------------------------------------------------------------

    async def intent_object(self, provider_payment_id: str) -> Json:
        """The stored PaymentIntent, as Stripe would put it in an event."""
        async with transaction(self.sessions) as session:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT)
            return dict(row.data)

    def stripe_event(self, event_type: str, obj: Mapping[str, Any]) -> Delivery:
        """A Stripe event about `obj` and the headers Stripe would send it with, signed with
        the webhook secret."""
        return events.stripe_event(event_type, obj, self.webhook_secret)


def _check_positive(amount: int, field: str) -> None:
    if amount < 1:
        raise ProviderError(f"Invalid positive integer: {field}", code="parameter_invalid_integer")


if TYPE_CHECKING:

    def _implements(provider: SimulatedStripe) -> StripeProtocols:
        # mypy checks here that the simulator satisfies the protocols.
        return provider
