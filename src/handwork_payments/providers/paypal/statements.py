"""PayPal's statement: Transaction Search (GET /v1/reporting/transactions, spec
reporting_transactions_v1.json), paged with `page` / `total_pages`, at most 31 days a
request, translated into StatementLines. Used by the PayPal adapter and, on its stored
transactions, by the PayPal simulator.

Event codes read (PayPal's "Transaction event codes"): T0006 (PayPal Checkout APIs: a
capture), T1107 (a refund initiated by the merchant), T0000/T0001 (a payout item: general
and mass payments), T1201 (a chargeback), T1106 (a reversal); `paypal_reference_id` names
the capture a refund belongs to. A line's reference is the transaction id, which is the
capture id and the refund id of the Payments v2 API; for a payout, the payout item id
(`paypal_reference_id`), which our payout rows keep."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from handwork_payments.kit.money import to_minor
from handwork_payments.providers.base import StatementKind, StatementLine

KINDS = {
    "T0006": StatementKind.CAPTURE,
    "T1107": StatementKind.REFUND,
    "T0000": StatementKind.TRANSFER,
    "T0001": StatementKind.TRANSFER,
    "T1201": StatementKind.DISPUTE,
    "T1106": StatementKind.DISPUTE,
}
PAYOUT_CODES = ("T0000", "T0001")
# Transaction Search answers at most 31 days per request.
MAX_SPAN = timedelta(days=31)
PAGE_SIZE = 500


def line(details: Mapping[str, Any]) -> StatementLine:
    info = details["transaction_info"]
    code = str(info.get("transaction_event_code", ""))
    amount = info["transaction_amount"]
    currency = str(amount["currency_code"])
    fee = info.get("fee_amount")
    reference = str(info["transaction_id"])
    if code in PAYOUT_CODES and info.get("paypal_reference_id"):
        reference = str(info["paypal_reference_id"])
    return StatementLine(
        line_id=str(info["transaction_id"]),
        kind=KINDS.get(code, StatementKind.OTHER),
        reference=reference,
        amount=to_minor(str(amount["value"]), currency),
        # PayPal shows fees as negative amounts (taken from the balance): ours are positive.
        fee=-to_minor(str(fee["value"]), currency) if fee else 0,
        currency=currency,
        created=datetime.fromisoformat(str(info["transaction_initiation_date"])),
    )


def search_params(since: datetime, until: datetime, page: int) -> dict[str, str | int]:
    return {
        "start_date": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_date": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fields": "transaction_info",
        "page_size": PAGE_SIZE,
        "page": page,
    }


def windows(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """[since, until) cut into spans Transaction Search accepts."""
    spans = []
    start = since
    while start < until:
        spans.append((start, min(start + MAX_SPAN, until)))
        start += MAX_SPAN
    return spans
