"""Chargeback evidence as Stripe's `disputes.update` takes it (DisputeUpdateParams.evidence),
shared by the adapter and the simulator: text fields only, no file uploads."""

from __future__ import annotations

from handwork_payments.providers.base import ChargebackEvidence, cut_to

# The long text fields hold at most 20,000 characters each, all fields together 150,000
# (Stripe's API reference); the short ones (name, email) we keep under 5,000, Stripe's usual
# string limit. Seven fields at most: well under the total.
TEXT_LIMIT = 20_000
SHORT_LIMIT = 5_000


def stripe_evidence(evidence: ChargebackEvidence) -> dict[str, str]:
    """Our evidence as Stripe's `evidence` hash, each field within its limit, the empty ones
    left out (a field sent empty would clear what is there)."""
    fields = {
        "product_description": cut_to(evidence.product_description, TEXT_LIMIT),
        "customer_name": cut_to(evidence.customer_name, SHORT_LIMIT),
        "customer_email_address": cut_to(evidence.customer_email, SHORT_LIMIT),
        "customer_purchase_ip": evidence.customer_purchase_ip or "",
        "service_date": evidence.service_date or "",
        "access_activity_log": cut_to(evidence.access_activity_log, TEXT_LIMIT),
        "uncategorized_text": cut_to(evidence.uncategorized_text, TEXT_LIMIT),
    }
    return {name: value for name, value in fields.items() if value}
