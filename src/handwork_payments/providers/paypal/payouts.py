"""PayPal Payouts v1 resources read as our types: a payout item as a ProviderTransfer, a
batch's items matched back to our orders, and PayPal's "sender_batch_id already used"
refusal recognised. Pure functions: no HTTP here."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from handwork_payments.kit.money import normalize_currency
from handwork_payments.providers.base import (
    PayoutOrder,
    ProviderIds,
    ProviderTransfer,
    TransferState,
)
from handwork_payments.providers.paypal.client import PayPalError
from handwork_payments.providers.paypal.orders import currency_of, minor

log = logging.getLogger(__name__)

# PayPal's own limit on items in one payout request.
MAX_PAYOUT_ITEMS = 15_000
PAYOUT_PAGE_SIZE = 1000  # the spec's maximum page_size
MAX_PAYOUT_PAGES = MAX_PAYOUT_ITEMS // PAYOUT_PAGE_SIZE + 1

# Payout item transaction_status -> TransferState.
#   SUCCESS -> SUCCEEDED.
#   FAILED, RETURNED (unclaimed past the 30-day window, or refused), BLOCKED, REFUNDED,
#   REVERSED, DENIED, CANCELED -> FAILED: the money came back (or never left).
#   PENDING, ONHOLD, UNCLAIMED (the receiver may still claim), NEW and anything unknown ->
#   PENDING: never fail money that may still arrive, never succeed what is not final.
PAYOUT_ITEM_STATES: dict[str, TransferState] = {
    "SUCCESS": TransferState.SUCCEEDED,
    "FAILED": TransferState.FAILED,
    "RETURNED": TransferState.FAILED,
    "BLOCKED": TransferState.FAILED,
    "REFUNDED": TransferState.FAILED,
    "REVERSED": TransferState.FAILED,
    "DENIED": TransferState.FAILED,
    "CANCELED": TransferState.FAILED,
    "PENDING": TransferState.PENDING,
    "ONHOLD": TransferState.PENDING,
    "UNCLAIMED": TransferState.PENDING,
    "NEW": TransferState.PENDING,
}
# A batch PayPal refused as a whole: its items never paid out.
FAILED_BATCH_STATUSES = frozenset({"DENIED", "CANCELED"})

_PAYOUT_BATCH_LINK = re.compile(r"/v1/payments/payouts/([A-Za-z0-9]+)(?:$|[/?])")


def transfer_state(status: str | None) -> TransferState:
    return PAYOUT_ITEM_STATES.get((status or "").upper(), TransferState.PENDING)


def sender_item_id(item: Mapping[str, Any]) -> str | None:
    detail = item.get("payout_item")
    return str(detail.get("sender_item_id")) if isinstance(detail, Mapping) else None


def transfer_of(item: Mapping[str, Any], header: Mapping[str, Any]) -> ProviderTransfer:
    detail = item.get("payout_item") if isinstance(item.get("payout_item"), Mapping) else {}
    assert isinstance(detail, Mapping)
    status = str(item.get("transaction_status") or "")
    state = transfer_state(status)
    batch_status = str(header.get("batch_status") or "").upper()
    if batch_status in FAILED_BATCH_STATUSES and state is TransferState.PENDING:
        state = TransferState.FAILED
        status = status or f"batch {batch_status}"
    reason = None
    if state is TransferState.FAILED:
        errors = item.get("errors")
        message = errors.get("message") if isinstance(errors, Mapping) else None
        name = errors.get("name") if isinstance(errors, Mapping) else None
        reason = ": ".join(str(p) for p in (status, name, message) if p) or "payout failed"
    amount_money = detail.get("amount")
    return ProviderTransfer(
        transfer_id=str(item.get("payout_item_id") or ""),
        state=state,
        amount=minor(amount_money, 0) or 0,
        currency=currency_of(amount_money, ""),
        batch_id=str(item.get("payout_batch_id") or header.get("payout_batch_id") or "") or None,
        failure_reason=reason,
        destination=str(detail["receiver"]) if detail.get("receiver") else None,
    )


def transfers_for(
    orders: Sequence[PayoutOrder],
    batch_id: str,
    header: Mapping[str, Any],
    items: list[Mapping[str, Any]],
    ids: ProviderIds,
) -> list[ProviderTransfer]:
    """One transfer per order, matched by the sender_item_id we set (under our prefix)."""
    by_sender = {sender_item_id(i): i for i in items}
    batch_status = str(header.get("batch_status") or "").upper()
    transfers = []
    for order in orders:
        item = by_sender.get(ids.key(order.idempotency_key))
        if item is None:
            failed = batch_status in FAILED_BATCH_STATUSES
            transfers.append(
                ProviderTransfer(
                    transfer_id="",
                    state=TransferState.FAILED if failed else TransferState.PENDING,
                    amount=order.amount,
                    currency=normalize_currency(order.currency),
                    batch_id=batch_id,
                    failure_reason=f"batch {batch_status}" if failed else None,
                )
            )
            continue
        transfer = transfer_of(item, header)
        if (problem := order.mismatch(transfer)) is not None:
            # Only possible if a batch key was reused for other orders: the caller refuses
            # to settle it (order.mismatch again), and an operator is told.
            log.error(
                "PayPal payout item %s is not payout %s: %s",
                transfer.transfer_id,
                order.payout_id,
                problem,
            )
        transfers.append(transfer)
    return transfers


def is_duplicate_batch(exc: PayPalError) -> bool:
    """PayPal's refusal of a sender_batch_id used before (within 30 days)."""
    text = json.dumps(exc.body).upper()
    return "SENDER_BATCH_ID" in text and any(
        word in text for word in ("DUPLICATE", "ALREADY", "EXIST")
    )


def duplicate_batch_id(exc: PayPalError) -> str | None:
    """The existing batch's id from PayPal's "sender_batch_id already used" error, which
    carries a HATEOAS link to the original payout: in the error's `links` as the spec
    has it, or in a detail's `link` as PayPal has also sent it."""

    def hrefs(value: Any) -> Iterator[str]:
        if isinstance(value, Mapping):
            if isinstance(value.get("href"), str):
                yield value["href"]
            for inner in value.values():
                yield from hrefs(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from hrefs(inner)

    for href in hrefs(exc.body):
        match = _PAYOUT_BATCH_LINK.search(href)
        if match:
            return match.group(1)
    return None
