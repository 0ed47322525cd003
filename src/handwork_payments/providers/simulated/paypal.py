"""The PayPal simulator: orders with intent AUTHORIZE, their authorisations, captures,
voids and refunds, reauthorisation (ReauthorizingProvider), Payouts one by one or in
batches (PayoutBatchProvider), Vault v3 setup and payment tokens (SetupProvider) and the
orders a saved PayPal pays, and the buyer's approvals on PayPal's pages (`approve`,
`approve_setup`).

Webhook events are signed with a simulator-only scheme (events.py) and translated by the
PayPal adapter's own translation (`providers/paypal/events.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.db import transaction
from handwork_payments.kit import fee_rules
from handwork_payments.kit.money import to_minor
from handwork_payments.models import SimulatedObject
from handwork_payments.providers import currencies
from handwork_payments.providers.base import (
    ChargebackEvidence,
    EvidenceSubmitter,
    HoldRef,
    NewHold,
    PaymentProvider,
    PayoutBatchProvider,
    PayoutOrder,
    ProviderError,
    ProviderEvent,
    ProviderHold,
    ProviderSetup,
    ProviderTransfer,
    ReauthorizingProvider,
    SetupProvider,
    StatementLine,
    TransferState,
)
from handwork_payments.providers.paypal import events as paypal_events
from handwork_payments.providers.paypal import evidence as paypal_evidence
from handwork_payments.providers.paypal import statements as paypal_statements
from handwork_payments.providers.paypal import vault
from handwork_payments.providers.simulated import events
from handwork_payments.providers.simulated.events import Delivery
from handwork_payments.providers.simulated.paypal_objects import (
    authorization_of,
    item_transfer,
    money,
    new_authorization,
    new_capture,
    new_order,
    new_payout_item,
    new_refund,
    order_hold,
    statement_line,
)
from handwork_payments.providers.simulated.paypal_vault import (
    PAYMENT_TOKEN,
    SETUP_TOKEN,
    approve_setup_token,
    check_exchangeable,
    new_payment_token,
    new_setup_token,
    pay_with_token,
)
from handwork_payments.providers.simulated.store import (
    DISPUTE,
    ORDER,
    PAYOUT_ITEM,
    STATEMENT_LINE,
    UPPER_ALNUM,
    Json,
    SimulatedProvider,
    UnknownObjectError,
    check_same_currency,
    hold_from_json,
    hold_json,
    paypal_id,
    paypal_time,
    random_string,
    save,
    transfer_from_json,
    transfer_json,
    utc_now,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class _Refusals(NamedTuple):
    """PayPal's refusals of a move of an authorisation's money: voided, captured already,
    another currency (its code), an amount below one."""

    voided: str
    captured: str
    currency_code: str
    not_positive: str


_CAPTURE = _Refusals(
    voided="A voided authorization cannot be captured.",
    captured="Authorization has been previously captured and hence cannot be captured again.",
    currency_code="CURRENCY_MISMATCH",
    not_positive="The capture amount must be positive.",
)
_REAUTHORIZE = _Refusals(
    voided="A voided authorization cannot be reauthorized.",
    captured="A captured authorization cannot be reauthorized.",
    currency_code="AUTH_CURRENCY_MISMATCH",
    not_positive="The amount must be positive.",
)


class SimulatedPayPal(SimulatedProvider):
    """PayPal behind the PaymentProvider, PayoutBatchProvider and ReauthorizingProvider
    protocols, plus the buyer's approval and event building. No Stripe Connect."""

    name = "paypal"
    currency_rules = currencies.PAYPAL
    amount_not_positive_code = "CANNOT_BE_ZERO_OR_NEGATIVE"
    amount_too_large_code = "MAX_VALUE_EXCEEDED"
    currency_invalid_code = "INVALID_CURRENCY_CODE"
    statement_kind = STATEMENT_LINE

    def _statement_line(self, data: Mapping[str, Any]) -> StatementLine:
        return paypal_statements.line(data)

    def _statement(self, session: AsyncSession, details: Json) -> None:
        """A Transaction Search line, kept as PayPal would list it."""
        transaction_id = details["transaction_info"]["transaction_id"]
        self._insert(session, f"line-{transaction_id}", STATEMENT_LINE, details)

    def _missing(self, kind: str, object_id: str) -> UnknownObjectError:
        return UnknownObjectError(
            f"The specified resource ({object_id}) does not exist.", code="INVALID_RESOURCE_ID"
        )

    # --- the PaymentProvider protocol ---------------------------------------------------

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        """Authorise the approved order."""

        async def authorize(session: AsyncSession) -> Json:
            return await self._authorize_order(session, provider_payment_id, payer_id)

        params: Json = {"order_id": provider_payment_id, "payer_id": payer_id}
        return hold_from_json(
            await self._call("confirm_hold", authorize, key=idempotency_key, params=params)
        )

    async def get_hold(self, ref: HoldRef) -> ProviderHold:
        async def read(session: AsyncSession) -> Json:
            row = await self._load(session, ref.provider_payment_id, ORDER)
            return hold_json(order_hold(row.data))

        return hold_from_json(await self._call("get_hold", read))

    async def find_payout(
        self, order: PayoutOrder, *, batch_id: str | None = None
    ) -> ProviderTransfer | None:
        """A pure look-up, by the payout's own key or by the sender_item_id its item
        carries (`batch_id` narrows it to one batch)."""

        async def read(session: AsyncSession) -> Json:
            record = await self._key_record(session, order.idempotency_key)
            if record is not None and record.data.get("operation") == "send_payout":
                result = record.data.get("result")
                if result is not None:
                    return dict(result)
            # Sent in a batch: found by the item's sender_item_id.
            reference = self.ids.key(order.idempotency_key)
            nested: Json = {"payout_item": {"sender_item_id": reference}}
            if batch_id is not None:
                nested["payout_batch_id"] = batch_id
            item = await self._find(session, PAYOUT_ITEM, nested)
            return transfer_json(item_transfer(item.data)) if item is not None else {}

        found = await self._call("find_payout", read)
        return transfer_from_json(found) if found else None

    async def find_batch(
        self, batch_id: str, orders: Sequence[PayoutOrder]
    ) -> list[ProviderTransfer | None]:
        """One read of the batch's items, matched by sender_item_id."""

        async def read(session: AsyncSession) -> Json:
            rows = await session.scalars(
                select(SimulatedObject).where(
                    SimulatedObject.provider == self.name,
                    SimulatedObject.kind == PAYOUT_ITEM,
                    SimulatedObject.data.contains({"payout_batch_id": batch_id}),
                )
            )
            items = {r.data["payout_item"]["sender_item_id"]: r.data for r in rows}
            found = (items.get(self.ids.key(o.idempotency_key)) for o in orders)
            return {"found": [transfer_json(item_transfer(i)) if i else None for i in found]}

        result = await self._call("find_payout", read)
        return [transfer_from_json(t) if t else None for t in result["found"]]

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        async def parse() -> ProviderEvent:
            events.verify_paypal_signature(headers, body)
            return await self.translate_event(body)

        return await self._faulty("parse_event", parse)

    async def translate_event(self, body: bytes) -> ProviderEvent:
        delivered = paypal_events.load_event(body)
        event = paypal_events.translate(delivered, self.ids)
        if event.object_id is None:
            # Refunds and disputes name a capture, not the order: the real adapter asks
            # PayPal (GET capture); the simulator looks in its own orders.
            hint = paypal_events.lookup_hint(delivered)
            if hint is not None:
                order_id = await self._order_holding(*hint)
                if order_id is not None:
                    event = replace(event, object_id=order_id)
        return event

    async def _order_holding(self, resource: str, resource_id: str) -> str | None:
        """The id of the order whose nested payments hold this capture / authorization."""
        plural = {"capture": "captures", "authorization": "authorizations"}.get(resource)
        if plural is None:
            return None
        nested = {"purchase_units": [{"payments": {plural: [{"id": resource_id}]}}]}
        async with transaction(self.sessions) as session:
            row = await self._find(session, ORDER, nested)
            return row.id if row is not None else None

    # --- orders: create, authorise, capture, void, refund ---------------------------------

    async def _open_hold(self, session: AsyncSession, hold: NewHold) -> Json:
        order = new_order(hold, self.ids.key(f"payment-{hold.payment_id}"))
        if hold.customer is not None:
            # A recurring charge: the saved PayPal (vault id) pays, the payer absent.
            token = await self._load(session, hold.payment_method or "", PAYMENT_TOKEN)
            if token.data["customer"]["id"] != hold.customer:
                raise self._missing("payment token", hold.payment_method or "")
            pay_with_token(order, token.data, utc_now())
        self._insert(session, order["id"], ORDER, order)
        return hold_json(order_hold(order))

    async def _authorize_order(
        self, session: AsyncSession, order_id: str, payer_id: str | None
    ) -> Json:
        row = await self._load(session, order_id, ORDER, lock=True)
        order = row.data
        if order["status"] == "CREATED":
            raise ProviderError(
                "Payer has not yet approved the Order for payment.", code="ORDER_NOT_APPROVED"
            )
        if order["status"] == "VOIDED":
            raise ProviderError(
                "The order was voided and cannot be authorized.", code="ORDER_COMPLETED_OR_VOIDED"
            )
        if payer_id and payer_id != order["payer"]["payer_id"]:
            raise ProviderError(
                "The payer id does not match the payer who approved the order.",
                code="PAYER_ID_MISMATCH",
            )
        if order["status"] == "COMPLETED":
            # Authorised already (under another key): report the hold as it is.
            return hold_json(order_hold(order))
        now = utc_now()
        order["purchase_units"][0]["payments"]["authorizations"].append(
            new_authorization(order, now)
        )
        order.update(status="COMPLETED", update_time=paypal_time(now))
        save(row, order)
        return hold_json(order_hold(order))

    async def _authorization_to_move(
        self, session: AsyncSession, ref: HoldRef, move: _Refusals, amount: int, currency: str
    ) -> tuple[SimulatedObject, Json]:
        """The order `ref` names, locked, and its authorisation, when `move` may take
        `amount` of `currency` from it (an authorisation still CREATED); refused
        otherwise, in PayPal's words for the move."""
        row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
        order = row.data
        authorization = authorization_of(order, ref)
        if authorization["status"] == "VOIDED":
            raise ProviderError(move.voided, code="AUTHORIZATION_VOIDED")
        if authorization["status"] != "CREATED":
            raise ProviderError(move.captured, code="AUTHORIZATION_ALREADY_CAPTURED")
        check_same_currency(
            order["purchase_units"][0]["amount"]["currency_code"], currency, move.currency_code
        )
        if amount < 1:
            raise ProviderError(move.not_positive, code="CANNOT_BE_ZERO_OR_NEGATIVE")
        return row, authorization

    async def _capture(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row, authorization = await self._authorization_to_move(
            session, ref, _CAPTURE, amount, currency
        )
        order = row.data
        unit = order["purchase_units"][0]
        code = unit["amount"]["currency_code"]
        authorised = to_minor(authorization["amount"]["value"], code)
        if amount > authorised:
            raise ProviderError(
                f"The capture amount ({amount}) exceeds the authorised amount ({authorised}).",
                code="MAX_CAPTURE_AMOUNT_EXCEEDED",
            )
        now = paypal_time(utc_now())
        # PayPal's standard commercial rate on what was captured (SIMULATOR_PAYPAL_FEES).
        fee = fee_rules.fee(self.settings.simulator_paypal_fees, amount, code)
        capture = new_capture(order, authorization, amount, fee, now)
        self._statement(session, statement_line("T0006", capture["id"], amount, fee, code))
        unit["payments"]["captures"].append(capture)
        # A final capture releases whatever was authorised beyond it.
        authorization.update(status="CAPTURED", update_time=now)
        order["update_time"] = now
        save(row, order)
        return {"capture_id": capture["id"], "amount": amount, "fee": fee}

    async def _cancel(self, session: AsyncSession, ref: HoldRef) -> None:
        """Void the authorisation, or the order itself before it has one."""
        row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
        order = row.data
        now = paypal_time(utc_now())
        authorizations = order["purchase_units"][0]["payments"]["authorizations"]
        if not authorizations:
            if order["status"] != "VOIDED":
                order.update(status="VOIDED", update_time=now)
                save(row, order)
            return
        authorization = authorization_of(order, ref)
        if authorization["status"] == "VOIDED":
            return  # already void: the outcome asked for
        if authorization["status"] != "CREATED":
            raise ProviderError(
                "A captured authorization cannot be voided.", code="CANNOT_BE_VOIDED"
            )
        authorization.update(status="VOIDED", update_time=now)
        order["update_time"] = now
        save(row, order)

    async def _refund(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
        order = row.data
        unit = order["purchase_units"][0]
        captures = unit["payments"]["captures"]
        if not captures:
            raise ProviderError(
                "The order has no completed capture to refund.", code="CAPTURE_NOT_COMPLETED"
            )
        capture = captures[-1]
        if ref.capture_id is not None and ref.capture_id != capture["id"]:
            raise self._missing("capture", ref.capture_id)
        code = capture["amount"]["currency_code"]
        check_same_currency(code, currency, "REFUND_CAPTURE_CURRENCY_MISMATCH")
        if amount < 1:
            raise ProviderError(
                "The refund amount must be positive.", code="CANNOT_BE_ZERO_OR_NEGATIVE"
            )
        captured = to_minor(capture["amount"]["value"], code)
        refunded = sum(to_minor(r["amount"]["value"], code) for r in unit["payments"]["refunds"])
        if refunded >= captured:
            raise ProviderError(
                "The capture has already been fully refunded.", code="CAPTURE_FULLY_REFUNDED"
            )
        if amount > captured - refunded:
            raise ProviderError(
                f"The refund amount ({amount}) exceeds what is left of the capture "
                f"({captured - refunded}).",
                code="REFUND_AMOUNT_EXCEEDED",
            )
        now = paypal_time(utc_now())
        refund = new_refund(unit, capture, amount, refunded, now)
        # PayPal keeps its fee on a refund: the line gives none back.
        self._statement(
            session, statement_line("T1107", refund["id"], -amount, 0, code, capture["id"])
        )
        unit["payments"]["refunds"].append(refund)
        capture["status"] = "REFUNDED" if refunded + amount == captured else "PARTIALLY_REFUNDED"
        capture["update_time"] = now
        order["update_time"] = now
        save(row, order)
        return {"refund_id": refund["id"], "amount": amount, "fee_refunded": 0}

    # --- reauthorisation (ReauthorizingProvider) ------------------------------------------

    async def reauthorize(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderHold:
        """PayPal's reauthorisation, as the PayPal double models it: a new authorisation
        inside the original's 29 days, the original voided so the money is reserved once.
        The honour-period timing rules are not enforced."""
        return hold_from_json(
            await self._call_on_hold(
                "reauthorize", self._reauthorize, ref, amount, currency, idempotency_key
            )
        )

    async def _reauthorize(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row, authorization = await self._authorization_to_move(
            session, ref, _REAUTHORIZE, amount, currency
        )
        order = row.data
        unit = order["purchase_units"][0]
        code = unit["amount"]["currency_code"]
        now = paypal_time(utc_now())
        renewed: Json = {
            **authorization,
            "id": paypal_id(),
            "status": "CREATED",
            "amount": money(amount, code),
            "create_time": now,
            "update_time": now,
        }
        authorization.update(status="VOIDED", update_time=now)
        unit["payments"]["authorizations"].append(renewed)
        order["update_time"] = now
        save(row, order)
        return hold_json(order_hold(order))

    # --- Payouts (one by one, or in batches: PayoutBatchProvider) --------------------------

    async def _pay_out(
        self, session: AsyncSession, order: PayoutOrder, currency: str, batch_id: str | None = None
    ) -> Json:
        if not _EMAIL.match(order.destination):
            raise ProviderError(
                f"Receiver is not a valid email address: {order.destination!r}",
                code="RECEIVER_INVALID",
            )
        item = new_payout_item(
            order, currency, batch_id or paypal_id(13), self.ids.key(order.idempotency_key)
        )
        self._statement(
            session,
            statement_line(
                "T0001", item["transaction_id"], -order.amount, 0, currency, item["payout_item_id"]
            ),
        )
        self._insert(session, item["payout_item_id"], PAYOUT_ITEM, item)
        return transfer_json(item_transfer(item))

    async def send_payout_batch(
        self, orders: Sequence[PayoutOrder], batch_key: str
    ) -> list[ProviderTransfer]:
        """One batch under `batch_key` (the sender_batch_id); an item whose receiver is
        refused fails alone, as PayPal lists it FAILED while paying the others."""
        if not orders:
            return []
        params: Json = {
            "orders": [
                {
                    "payout_id": o.payout_id,
                    "destination": o.destination,
                    "amount": o.amount,
                    "currency": o.currency.upper(),
                }
                for o in orders
            ]
        }

        async def act(session: AsyncSession) -> Json:
            batch_id = paypal_id(13)
            transfers: list[Json] = []
            for order in orders:
                self._check_amount(order.amount)
                code = self._currency(order.currency)
                try:
                    self._check_rule(self.currency_rules.payout_problem(order.amount, code))
                    transfers.append(await self._pay_out(session, order, code, batch_id=batch_id))
                except ProviderError as exc:
                    failed = ProviderTransfer(
                        "", TransferState.FAILED, order.amount, code, batch_id, exc.message
                    )
                    transfers.append(transfer_json(failed))
            return {"batch_id": batch_id, "transfers": transfers}

        result = await self._call("send_payout_batch", act, key=batch_key, params=params)
        return [transfer_from_json(t) for t in result["transfers"]]

    # --- Vault v3: saving the payer's PayPal (SetupProvider) ------------------------------

    async def create_setup(self, *, reference: str, email: str) -> ProviderSetup:
        async def act(session: AsyncSession) -> Json:
            settings = self.settings
            token = new_setup_token(
                settings.paypal_vault_return_url, settings.paypal_vault_cancel_url
            )
            self._insert(session, token["id"], SETUP_TOKEN, token)
            return token

        params: Json = {"reference": reference, "email": email}
        key = f"{reference}-setup-token"
        return vault.pending_setup(await self._call("create_setup", act, key=key, params=params))

    async def get_setup(self, setup_id: str, *, reference: str) -> ProviderSetup:
        """The setup token; once approved, exchanged for its payment token under the key
        `{reference}-payment-token` (asking again answers the same payment token)."""

        async def read(session: AsyncSession) -> Json:
            return dict((await self._load(session, setup_id, SETUP_TOKEN)).data)

        token = await self._call("get_setup", read)
        if vault.status(token) not in (vault.APPROVED, vault.VAULTED):
            return vault.pending_setup(token)
        # VAULTED too: the exchange's key answers the payment token it made (the simulator
        # keeps its keys; the adapter looks in the customer's vault instead).

        async def exchange(session: AsyncSession) -> Json:
            row = await self._load(session, setup_id, SETUP_TOKEN, lock=True)
            check_exchangeable(row.data)
            payment_token = new_payment_token(row.data)
            self._insert(session, payment_token["id"], PAYMENT_TOKEN, payment_token)
            save(row, {**row.data, "status": "VAULTED"})
            return payment_token

        key = f"{reference}-payment-token"
        made = await self._call(
            "create_payment_token", exchange, key=key, params={"setup_token": setup_id}
        )
        return vault.saved_setup(setup_id, made)

    async def approve_setup(self, setup_id: str, *, declines: bool = False) -> str:
        """The payer approves saving PayPal at the setup token's approval link; returns
        their payer id. `declines`: every later charge of theirs is declined."""
        async with transaction(self.sessions) as session:
            row = await self._load(session, setup_id, SETUP_TOKEN, lock=True)
            token = dict(row.data)
            payer_id = approve_setup_token(token, declines)
            save(row, token)
            return payer_id

    async def set_declines(self, vault_id: str, declines: bool) -> None:
        """The saved PayPal's later charges are declined (or pay again): the payer's
        funding changed at PayPal."""
        async with transaction(self.sessions) as session:
            row = await self._load(session, vault_id, PAYMENT_TOKEN, lock=True)
            token = dict(row.data)
            token["payment_source"]["paypal"]["declines"] = declines
            save(row, token)

    # --- what the buyer does on PayPal's page ---------------------------------------------

    async def approve(self, order_id: str) -> str:
        """The buyer approves the order; returns their payer id. Approving again answers
        the same payer."""
        async with transaction(self.sessions) as session:
            row = await self._load(session, order_id, ORDER, lock=True)
            order = row.data
            if order["status"] == "VOIDED":
                raise ProviderError(
                    "The order was voided and cannot be approved.",
                    code="ORDER_COMPLETED_OR_VOIDED",
                )
            if order.get("payer"):
                return str(order["payer"]["payer_id"])
            payer_id = "PAYER" + random_string(UPPER_ALNUM, 9)
            order["payer"] = {
                "payer_id": payer_id,
                "email_address": f"buyer-{payer_id.lower()}@example.com",
                "name": {"given_name": "Simulated", "surname": "Buyer"},
            }
            order["status"] = "APPROVED"
            order["update_time"] = paypal_time(utc_now())
            save(row, order)
            return payer_id

    # --- objects and events ---------------------------------------------------------------

    async def order_object(self, order_id: str) -> Json:
        """The stored order, authorisations, captures and refunds nested in
        `purchase_units[0].payments` as PayPal's GET order shows them."""
        async with transaction(self.sessions) as session:
            row = await self._load(session, order_id, ORDER)
            return dict(row.data)

    async def submit_evidence(
        self, *, dispute_id: str, evidence: ChargebackEvidence, idempotency_key: str
    ) -> None:
        """What the real adapter sends to provide-evidence, recorded on the dispute (made
        here if this simulator has not seen it: disputes reach us as events only), which
        then waits for PayPal's decision; a second, different submission is refused."""
        found = paypal_evidence.evidences(evidence)

        async def act(session: AsyncSession) -> Json:
            row = await session.get(SimulatedObject, dispute_id)
            if row is not None and (row.provider != self.name or row.kind != DISPUTE):
                raise self._missing("dispute", dispute_id)
            if row is not None:
                raise ProviderError(
                    f"Dispute {dispute_id} has its evidence already.",
                    code="EVIDENCE_ALREADY_PROVIDED",
                )
            self._insert(
                session,
                dispute_id,
                DISPUTE,
                {"dispute_id": dispute_id, "status": "UNDER_REVIEW", "evidences": found},
            )
            return {}

        params: Json = {"dispute_id": dispute_id, "evidences": found}
        await self._call("submit_evidence", act, key=idempotency_key, params=params)

    def paypal_event(self, event_type: str, resource: Mapping[str, Any]) -> Delivery:
        """A PayPal webhook event about `resource`, signed with the simulator-only scheme."""
        return events.paypal_event(event_type, resource)


if TYPE_CHECKING:

    def _implements(
        provider: SimulatedPayPal,
    ) -> tuple[
        PaymentProvider,
        PayoutBatchProvider,
        ReauthorizingProvider,
        EvidenceSubmitter,
        SetupProvider,
    ]:
        # mypy checks here that the simulator satisfies the protocols.
        return provider, provider, provider, provider, provider
