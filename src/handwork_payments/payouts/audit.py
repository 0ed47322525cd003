"""The audit row of a change of a payout: one shape for every payout command and handler."""

from __future__ import annotations

from handwork_payments.audit.service import ObjectAudit

audit_payout = ObjectAudit("payout")
