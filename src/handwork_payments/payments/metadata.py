"""payment_metadata as admins see it: decrypted, or null with an alert when no configured
key opens it (a key was dropped from METADATA_ENCRYPTION_KEYS too early, or a process ran
with a generated one), never a 500 that hides every other payment of the page. Every
decrypted read is audited (who read which payment's metadata)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit.crypto import UnreadableMetadata
from handwork_payments.models import Alert, Payment, User
from handwork_payments.runtime import Runtime

UNREADABLE = "metadata_unreadable"


async def readable_metadata(
    runtime: Runtime, payment: Payment, reader: User
) -> dict[str, Any] | None:
    try:
        metadata = runtime.cipher.decrypt(payment.payment_metadata)
    except UnreadableMetadata:
        await _alert_once(runtime, payment.id)
        return None
    if metadata is not None:
        async with transaction(runtime.sessions) as session:
            await record(
                session,
                actor_id=reader.id,
                action="payment.metadata_read",
                object_type="payment",
                object_id=payment.id,
            )
    return metadata


async def _alert_once(runtime: Runtime, payment_id: int) -> None:
    """One alert a payment, however often admins look at it."""
    async with transaction(runtime.sessions) as session:
        known = await session.scalar(
            select(Alert.id)
            .where(Alert.kind == UNREADABLE, Alert.object_type == "payment")
            .where(Alert.object_id == payment_id)
            .limit(1)
        )
        if known is None:
            await alert(
                session,
                UNREADABLE,
                f"payment #{payment_id}: payment_metadata cannot be decrypted with "
                "METADATA_ENCRYPTION_KEYS (was the key that wrote it removed?)",
                "payment",
                payment_id,
            )
