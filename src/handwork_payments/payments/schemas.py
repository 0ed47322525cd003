from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    Field,
    StringConstraints,
    UrlConstraints,
)

from handwork_payments.kit.responses import RowOut, major
from handwork_payments.kit.schemas import AmountBody, AmountIn, CurrencyIn, Id, LongText, Strict
from handwork_payments.models import Payment, PaymentMethod, PaymentStatus, Wallet

ProviderId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_\-]+$"
    ),
]


# payment_metadata as Stripe bounds it: 50 keys, keys of 40 characters, values of 500.
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = (
    Annotated[str, StringConstraints(max_length=500)]
    | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
    | bool
    | None
)


class PaymentOut(RowOut):
    id: int
    booking_id: int
    amount: Decimal
    platform_fee: Decimal
    worker_amount: Decimal
    refunded_amount: Decimal
    released_amount: Decimal
    currency: str
    payment_method: PaymentMethod
    stripe_payment_id: str | None
    paypal_payment_id: str | None
    status: PaymentStatus
    created_at: datetime
    held_at: datetime | None
    released_at: datetime | None
    refunded_at: datetime | None
    refund_reason: str | None
    auto_release_at: datetime | None
    capture_by: datetime | None
    failure_reason: str | None = None
    wallet: Wallet | None = Field(
        default=None, description="The card wallet it was paid through, when one was used"
    )
    stablecoin: bool = Field(default=False, description='Paid in stablecoins ("crypto")')
    payment_metadata: dict[str, Any] | None = Field(
        default=None, description="Decrypted for admins only"
    )
    risk_level: str | None = Field(
        default=None, description="Admins only: normal | elevated | highest (risk rules)"
    )
    risk_reasons: list[str] | None = Field(
        default=None, description="Admins only: the risk rules that fired"
    )

    @classmethod
    def of(cls, payment: Payment, *, metadata: dict[str, Any] | None = None) -> PaymentOut:
        c = payment.currency
        return cls.from_row(
            payment,
            amount=major(payment.amount, c),
            platform_fee=major(payment.platform_fee, c),
            worker_amount=major(payment.worker_amount, c),
            refunded_amount=major(payment.refunded_amount, c),
            released_amount=major(payment.released_amount, c),
            # Shown to every reader; the risk fields are for admins (payments/endpoints.py).
            failure_reason=payment.failure_reason,
            wallet=payment.wallet,
            stablecoin=payment.stablecoin,
            payment_metadata=metadata,
        )


class StripeIntentOut(PaymentOut):
    client_secret: str | None


class PayPalOrderOut(PaymentOut):
    approval_url: str | None


class _NewPayment(AmountBody):
    booking_id: Id
    amount: AmountIn
    currency: CurrencyIn
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        default=None,
        max_length=50,
        description="Stored encrypted; shown to admins only. At most 50 keys of up to 40 "
        "characters, values up to 500 characters",
    )


class StripeIntentCreate(_NewPayment):
    payment_method: ProviderId | None = Field(
        default=None,
        description="Confirm server-side with this PaymentMethod (e.g. pm_card_visa); "
        '"crypto" for a stablecoin payment (STRIPE_CRYPTO_ENABLED, USD only), confirmed by '
        "the payer with Stripe.js from the client_secret",
    )


class StripeConfirm(Strict):
    payment_intent_id: ProviderId
    booking_id: Id


# PayPal refuses longer ones (experience_context.return_url: maxLength 4000); refused
# there, the payment would already exist and fail.
RedirectUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=4000)]


class PayPalCreate(_NewPayment):
    return_url: RedirectUrl
    cancel_url: RedirectUrl


class PayPalExecute(Strict):
    payment_id: ProviderId = Field(description="PayPal's order id (paypal_payment_id)")
    payer_id: ProviderId
    booking_id: Id


class RefundCreate(Strict):
    payment_id: Id
    amount: AmountIn | None = Field(default=None, description="Omitted: all that is left")
    reason: LongText
    milestone_id: Id | None = Field(
        default=None, description="Omitted: the newest milestones not released first"
    )


class ReleaseCreate(Strict):
    milestone_id: Id = Field(description="The milestone to release; no body: all still held")
