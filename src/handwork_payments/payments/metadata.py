"""payment_metadata as admins see it: decrypted, or null with an alert when no configured
key opens it (a key was dropped from METADATA_ENCRYPTION_KEYS too early, or a process ran
with a generated one), never a 500 that hides every other payment of the page. Every
decrypted read is audited (who read which payment's metadata)."""

from __future__ import annotations

from typing import Any

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit.crypto import UnreadableMetadata
from handwork_payments.models import Payment, User
from handwork_payments.runtime import Runtime

UNREADABLE = "metadata_unreadable"


async def readable_metadata(
    runtime: Runtime, payment: Payment, reader: User
) -> dict[str, Any] | None:
    try:
        metadata = runtime.cipher.decrypt(payment.payment_metadata)
    except UnreadableMetadata:
        async with transaction(runtime.sessions) as session:
            # One open alert a payment however often admins look: alert() de-duplicates
            # (its count says how often the metadata was unreadable).
            await alert(
                session,
                UNREADABLE,
                f"payment #{payment.id}: payment_metadata cannot be decrypted with "
                "METADATA_ENCRYPTION_KEYS (was the key that wrote it removed?)",
                "payment",
                payment.id,
            )
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
