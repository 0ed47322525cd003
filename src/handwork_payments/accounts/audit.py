"""The audit row of a change of a user's account: registration, status, payout methods."""

from __future__ import annotations

from handwork_payments.audit.service import ObjectAudit

audit_user = ObjectAudit("user")
