"""Stripe's stablecoin payments (`payment_method: "crypto"`), as Stripe documents them
(docs.stripe.com/payments/stablecoin-payments; support.stripe.com "Get started with Pay
with Crypto"): the payer pays USDC (or USDP, USDG) from a crypto wallet at
crypto.stripe.com, and the payment settles in the platform's Stripe balance in USD.

- No manual capture ("Manual capture support: Not supported"): the intent captures when the
  payer completes it, and the payment is held in escrow as captured money (HoldKind.CAPTURED,
  as after the hold guard's capture), released and refunded through the same ledger.
- USD only ("the settlement currency is limited to USD"; only US businesses accept them):
  a payment in another currency is refused before anything is written.
- Refunds and partial refunds: yes, back to the payer's wallet in stablecoins (the ordinary
  refund path). Disputes: none (Stripe: no chargebacks for stablecoin payments).
- Only where the platform's account has the Crypto payment method: STRIPE_CRYPTO_ENABLED.
"""

from __future__ import annotations

from handwork_payments.kit.errors import BadRequest
from handwork_payments.settings import Settings

# What a client sends as `payment_method` to pay in stablecoins.
CRYPTO = "crypto"
# Stripe settles stablecoin payments in USD, and accepts them in USD only.
CURRENCY = "USD"


def check_allowed(settings: Settings, currency: str) -> None:
    """Refuse (400) a stablecoin payment this platform cannot take, saying why."""
    if not settings.stripe_crypto_enabled:
        raise BadRequest(
            'Stablecoin payments (payment_method "crypto") are not enabled on this platform '
            "(STRIPE_CRYPTO_ENABLED): pay by card or wallet instead"
        )
    if currency.upper() != CURRENCY:
        raise BadRequest(
            f"Stablecoin payments are in USD only (Stripe settles them in USD); this one is "
            f"in {currency.upper()}: pay by card or wallet instead"
        )
