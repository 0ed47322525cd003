"""`handwork-payments crypto rotate`: every stored secret re-encrypted with the newest key
of METADATA_ENCRYPTION_KEYS, so that older keys can then be removed.

Run it once every process has the new key list (newest first): from then on new secrets
are written with the newest key and old ones still open. Rows are walked by id in batches,
each batch one short transaction holding its rows' locks only for the re-encryption
(payments are locked by money operations the same way, in id order), so it is safe
while the service runs. A row the newest key already opens is skipped: an interrupted run
resumes where it stopped. A row no key opens is logged and left alone, never a failure of the
whole run (admins see such metadata as null with a metadata_unreadable alert)."""

from __future__ import annotations

import logging

from sqlalchemy import text

from handwork_payments.db import transaction
from handwork_payments.kit.crypto import UnreadableMetadata
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# (table, column) of every encrypted column. idempotency_records.response_ciphertext holds
# the encrypted responses of the Idempotency-Key cache where that schema is in place.
ENCRYPTED = (
    ("payments", "payment_metadata"),
    ("idempotency_records", "response_ciphertext"),
)


async def rotate(runtime: Runtime, *, batch: int = 500) -> dict[str, int]:
    """{"table.column": rows re-encrypted} for every encrypted column present."""
    counts: dict[str, int] = {}
    for table, column in await _present(runtime):
        counts[f"{table}.{column}"] = await _rotate_column(runtime, table, column, batch)
    return counts


async def _present(runtime: Runtime) -> list[tuple[str, str]]:
    async with runtime.sessions() as session:
        found = await session.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            )
        )
        columns = {(row.table_name, row.column_name) for row in found}
    return [pair for pair in ENCRYPTED if pair in columns]


async def _rotate_column(runtime: Runtime, table: str, column: str, batch: int) -> int:
    rotated, after_id = 0, 0
    while True:
        async with transaction(runtime.sessions) as session:
            rows = (
                await session.execute(
                    text(
                        f"SELECT id, {column} AS token FROM {table} "
                        f"WHERE id > :after AND {column} IS NOT NULL "
                        "ORDER BY id LIMIT :n FOR UPDATE"
                    ),
                    {"after": after_id, "n": batch},
                )
            ).all()
            changed = []
            for row in rows:
                token = bytes(row.token)
                if runtime.cipher.is_newest(token):
                    continue
                try:
                    changed.append({"id": row.id, "token": runtime.cipher.rotate(token)})
                except UnreadableMetadata:
                    log.warning("%s #%s: no configured key opens %s", table, row.id, column)
            if changed:
                await session.execute(
                    text(f"UPDATE {table} SET {column} = :token WHERE id = :id"), changed
                )
        rotated += len(changed)
        if len(rows) < batch:
            return rotated
        after_id = rows[-1].id
