"""Stripe's statement: balance transactions (GET /v1/balance_transactions, paged with
`starting_after`), translated into StatementLines. Used by the Stripe adapter and, on its
stored balance transactions, by the Stripe simulator."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from handwork_payments.providers.base import StatementKind, StatementLine

# Balance transaction `type` -> what the line records. A dispute's withdrawal and
# reinstatement are `adjustment`s whose source is the dispute.
KINDS = {
    "charge": StatementKind.CAPTURE,
    "payment": StatementKind.CAPTURE,
    "refund": StatementKind.REFUND,
    "payment_refund": StatementKind.REFUND,
    "transfer": StatementKind.TRANSFER,
    "transfer_refund": StatementKind.TRANSFER_REVERSAL,
    "transfer_cancel": StatementKind.TRANSFER_REVERSAL,
    "adjustment": StatementKind.DISPUTE,
}

PAGE_SIZE = 100


def line(txn: Mapping[str, Any]) -> StatementLine:
    source = txn.get("source")
    parent = None
    if isinstance(source, Mapping):  # expanded (data.source)
        parent = source.get("transfer") or source.get("charge")
        source = source.get("id")
    kind = KINDS.get(str(txn.get("type")), StatementKind.OTHER)
    if kind is StatementKind.DISPUTE and not str(source or "").startswith("du_"):
        kind = StatementKind.OTHER  # an adjustment that is not a dispute's
    return StatementLine(
        line_id=str(txn["id"]),
        kind=kind,
        reference=str(source or ""),
        amount=int(txn["amount"]),
        fee=int(txn.get("fee") or 0),
        currency=str(txn["currency"]).upper(),
        created=datetime.fromtimestamp(int(txn["created"]), tz=UTC),
        parent=str(parent) if isinstance(parent, str) else None,
    )


def list_params(since: datetime, until: datetime, after: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "created": {"gte": int(since.timestamp()), "lt": int(until.timestamp())},
        "limit": PAGE_SIZE,
        # The source objects name their parents (a transfer reversal its transfer).
        "expand": ["data.source"],
    }
    if after is not None:
        params["starting_after"] = after
    return params
