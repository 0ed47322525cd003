"""Chargeback evidence as PayPal's provide-evidence takes it (customer_disputes_v1.json):
a multipart/form-data request whose `input` part is JSON, {"evidences": [evidence]}, each
evidence an `evidence_type` and `notes` of 1 to 2,000 characters. We send text only, no
`evidence-file` part: a service booking has no shipment to track or receipt to scan."""

from __future__ import annotations

import json
from typing import Any

from handwork_payments.providers.base import EVIDENCE_CUT_MARK, ChargebackEvidence, cut_to

NOTES_LIMIT = 2_000  # evidence.notes maxLength
# The audit trail and dispute history can be long: at most this many OTHER evidences of
# it (20,000 characters, as much as Stripe takes in one field); the rest is cut.
MAX_OTHER_NOTES = 10


def _chunks(text: str) -> list[str]:
    """`text` in notes-sized pieces, at most MAX_OTHER_NOTES, the last marked if cut."""
    pieces = [text[i : i + NOTES_LIMIT] for i in range(0, len(text), NOTES_LIMIT)]
    if len(pieces) > MAX_OTHER_NOTES:
        pieces = pieces[:MAX_OTHER_NOTES]
        pieces[-1] = cut_to(pieces[-1] + EVIDENCE_CUT_MARK, NOTES_LIMIT)
    return pieces


def evidences(evidence: ChargebackEvidence) -> list[dict[str, Any]]:
    """The service delivered (who bought it, when it was done, the activity around it),
    then the rest as OTHER."""
    delivered = "\n".join(
        line
        for line in (
            evidence.product_description,
            f"Customer: {evidence.customer_name} <{evidence.customer_email}>",
            f"Customer IP at payment: {evidence.customer_purchase_ip}"
            if evidence.customer_purchase_ip
            else "",
            f"Service completed on: {evidence.service_date}" if evidence.service_date else "",
            evidence.access_activity_log,
        )
        if line
    )
    found = [
        {
            "evidence_type": "PROOF_FOR_SOFTWARE_OR_SERVICE_DELIVERED",
            "notes": cut_to(delivered, NOTES_LIMIT),
        }
    ]
    found += [
        {"evidence_type": "OTHER", "notes": piece} for piece in _chunks(evidence.uncategorized_text)
    ]
    return found


def input_part(evidence: ChargebackEvidence) -> tuple[str | None, bytes, str]:
    """The multipart `input` part: a form field (no file name) holding the JSON."""
    body = json.dumps({"evidences": evidences(evidence)}).encode()
    return None, body, "application/json"
