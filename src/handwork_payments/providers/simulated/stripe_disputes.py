"""What the payer's bank does to a Stripe payment in the simulator: a chargeback opened on
a captured charge (the amount and Stripe's dispute fee taken from the balance), the
evidence the platform submits for it, and the network's decision. `SimulatedStripe`
inherits it; tests and the simulator's HTTP routes call it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit import fee_rules
from handwork_payments.providers.base import ChargebackEvidence, ProviderError
from handwork_payments.providers.simulated.store import (
    BALANCE_TRANSACTION,
    CHARGE,
    DISPUTE,
    PAYMENT_INTENT,
    Json,
    SimulatedProvider,
    save,
)
from handwork_payments.providers.simulated.stripe_objects import (
    DISPUTE_TAKES_EVIDENCE,
    balance_transaction,
    currency,
    new_dispute,
)
from handwork_payments.providers.stripe_evidence import stripe_evidence


class StripeBank(SimulatedProvider):
    async def open_dispute(
        self, provider_payment_id: str, amount: int | None = None, reason: str = "fraudulent"
    ) -> Json:
        """The payer's bank disputes the captured charge: Stripe takes the amount and its
        dispute fee (SIMULATOR_STRIPE_DISPUTE_FEES) from the balance in one balance
        transaction. Returns the dispute, ready for `stripe_event("charge.dispute.created")`.
        Refused for an intent with no captured charge, and for a charge disputed already
        (a charge has one dispute at most)."""

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT, lock=True)
            intent = row.data
            if intent["status"] != "succeeded":
                raise ProviderError(
                    f"PaymentIntent {provider_payment_id} has no captured charge to dispute: "
                    f"it is {intent['status']}.",
                    code="payment_intent_unexpected_state",
                )
            charge_row = await self._load(session, intent["latest_charge"], CHARGE, lock=True)
            if charge_row.data.get("disputed"):
                raise ProviderError(
                    f"Charge {charge_row.id} has been disputed already.", code="charge_disputed"
                )
            save(charge_row, {**charge_row.data, "disputed": True})
            taken = amount if amount is not None else int(intent["amount_received"])
            dispute = new_dispute(intent, str(intent["latest_charge"]), taken, reason)
            fee = fee_rules.fee(
                self.settings.simulator_stripe_dispute_fees, taken, currency(intent)
            )
            txn = balance_transaction(
                "adjustment", dispute["id"], -taken, fee, currency(intent), "Dispute fee"
            )
            self._insert(session, txn["id"], BALANCE_TRANSACTION, txn)
            dispute["balance_transactions"].append(txn)
            self._insert(session, dispute["id"], DISPUTE, dispute)
            return dispute

        return await self._perform(act)

    async def submit_evidence(
        self, *, dispute_id: str, evidence: ChargebackEvidence, idempotency_key: str
    ) -> None:
        """What the real adapter sends (`disputes.update`, submit=True), stored on the
        dispute, which goes under review; refused once it takes no more evidence."""
        fields = stripe_evidence(evidence)

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, dispute_id, DISPUTE, lock=True)
            dispute = row.data
            if dispute["status"] not in DISPUTE_TAKES_EVIDENCE:
                raise ProviderError(
                    f"Dispute {dispute_id} is {dispute['status']}: it takes no more evidence.",
                    code="dispute_evidence_closed",
                )
            details = dispute["evidence_details"]
            details.update(has_evidence=True, submission_count=int(details["submission_count"]) + 1)
            dispute.update(evidence=fields, status="under_review")
            save(row, dispute)
            return {}

        params: Json = {"dispute_id": dispute_id, "evidence": fields}
        await self._call("submit_evidence", act, key=idempotency_key, params=params)

    async def close_dispute(self, dispute_id: str, *, won: bool) -> Json:
        """The network decides. Won: the amount comes back and, as Stripe's dispute FAQ says,
        the dispute fee too (a reinstating balance transaction with a negative fee)."""

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, dispute_id, DISPUTE, lock=True)
            dispute = row.data
            if dispute["status"] in ("won", "lost"):
                raise ProviderError(
                    f"Dispute {dispute_id} was decided already: {dispute['status']}.",
                    code="dispute_closed",
                )
            if won:
                taken = dispute["balance_transactions"][0]
                txn = balance_transaction(
                    "adjustment",
                    dispute_id,
                    -int(taken["amount"]),
                    -int(taken["fee"]),
                    str(dispute["currency"]),
                    "Dispute fee returned",
                )
                self._insert(session, txn["id"], BALANCE_TRANSACTION, txn)
                dispute["balance_transactions"].append(txn)
            dispute["status"] = "won" if won else "lost"
            save(row, dispute)
            return dict(dispute)

        return await self._perform(act)
