from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Field,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

from handwork_payments.kit.money import format_amount
from handwork_payments.kit.schemas import AmountIn, CurrencyIn, Id, LongText, Strict, minor
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


def _money(minor_units: int, currency: str) -> Decimal:
    return Decimal(format_amount(minor_units, currency))


class PaymentOut(BaseModel):
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
        return cls(
            id=payment.id,
            booking_id=payment.booking_id,
            amount=_money(payment.amount, c),
            platform_fee=_money(payment.platform_fee, c),
            worker_amount=_money(payment.worker_amount, c),
            refunded_amount=_money(payment.refunded_amount, c),
            released_amount=_money(payment.released_amount, c),
            currency=c,
            payment_method=payment.payment_method,
            stripe_payment_id=payment.stripe_payment_id,
            paypal_payment_id=payment.paypal_payment_id,
            status=payment.status,
            created_at=payment.created_at,
            held_at=payment.held_at,
            released_at=payment.released_at,
            refunded_at=payment.refunded_at,
            refund_reason=payment.refund_reason,
            auto_release_at=payment.auto_release_at,
            capture_by=payment.capture_by,
            failure_reason=payment.failure_reason,
            wallet=payment.wallet,
            stablecoin=payment.stablecoin,
            payment_metadata=metadata,
        )


class StripeIntentOut(PaymentOut):
    client_secret: str | None


class PayPalOrderOut(PaymentOut):
    approval_url: str | None


class _NewPayment(Strict):
    booking_id: Id
    amount: AmountIn
    currency: CurrencyIn
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        default=None,
        max_length=50,
        description="Stored encrypted; shown to admins only. At most 50 keys of up to 40 "
        "characters, values up to 500 characters",
    )

    @model_validator(mode="after")
    def _precision(self) -> _NewPayment:
        minor(self.amount, self.currency)
        return self

    @property
    def amount_minor(self) -> int:
        return minor(self.amount, self.currency)


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
