"""Stripe's wallet and stablecoin objects, shared by the real adapter and the simulator: the
card wallet a charge names, and PaymentMethodDomains, translated into the protocol's terms."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from handwork_payments.providers.base import PaymentMethodDomain

# The card wallets a payment records (the charge's `payment_method_details.card.wallet.type`);
# Stripe's others (samsung_pay, masterpass, visa_checkout, amex_express_checkout) are
# recorded as none.
WALLETS = frozenset({"apple_pay", "google_pay", "link"})

# Stripe's payment method type for stablecoin payments.
CRYPTO = "crypto"

# Stripe's largest page of a list.
MAX_PAGE = 100


def wallet(charge: Mapping[str, Any]) -> str | None:
    """The card wallet of an expanded charge (none for other methods, or a bare id)."""
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    found = (card.get("wallet") or {}).get("type")
    return found if found in WALLETS else None


def domain(data: Mapping[str, Any]) -> PaymentMethodDomain:
    created = data.get("created")
    return PaymentMethodDomain(
        domain_id=str(data["id"]),
        domain_name=str(data["domain_name"]),
        enabled=bool(data.get("enabled")),
        statuses={
            name: str(status["status"])
            for name in sorted(WALLETS)
            if isinstance(status := data.get(name), Mapping) and status.get("status")
        },
        created=datetime.fromtimestamp(int(created), tz=UTC) if created else None,
    )
