"""The audit chain: every audit row, once sealed, holds sha256(previous row's hash +
its own canonical content), so an edited, deleted or reordered row breaks every link after
it and `audit verify` names the first one.

Why sealed after commit rather than linked at insert: a link made inside the writer's
transaction needs the previous row's hash, i.e. one global lock held from the insert to
the commit (fsync included) of every money transaction: all payments would commit one at
a time. Instead writers only INSERT (no lock, no extra statement), and the sealer numbers
the committed, unsealed rows in id order under an advisory lock, a batch at a time, a few
seconds later (a periodic job, `handwork-payments audit seal`, and before `audit verify`
when asked). A row whose transaction commits after a later id was sealed simply takes the
next number: the chain's order is the sealing order, and there is one sealer at a time,
so the chain cannot fork. What a sealer cannot protect is a row deleted before it was
sealed; the sealing period (seconds) bounds that window, and `audit verify` reports how
many rows are still unsealed.

Personal data is hashed by its digest only (audit/personal.py), so erasure keeps the
chain intact; verify checks that a row's personal data still matches its digest, and that
personal data is missing only for users who were erased."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.personal import canonical, digest
from handwork_payments.db import Sessions, transaction
from handwork_payments.kit.clock import now

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the sealer ("audit" in ASCII).
SEAL_LOCK = 0x6175646974
SEAL_BATCH = 1000
_COLUMNS = (
    "id, actor_id, actor_kind, action, object_type, object_id, before, after, created_at, "
    "subject_id, personal_digest"
)


def content(row: Any, chain_seq: int) -> str:
    """The canonical text a row's hash covers: every column but the personal data itself
    (covered by personal_digest) and the hash."""
    return canonical(
        {
            "seq": chain_seq,
            "id": row.id,
            "actor_id": row.actor_id,
            "actor_kind": row.actor_kind,
            "action": row.action,
            "object_type": row.object_type,
            "object_id": row.object_id,
            "before": row.before,
            "after": row.after,
            "created_at": row.created_at.isoformat(),
            "subject_id": row.subject_id,
            "personal_digest": row.personal_digest,
        }
    )


def link(previous_hash: str, row: Any, chain_seq: int) -> str:
    return hashlib.sha256((previous_hash + content(row, chain_seq)).encode()).hexdigest()


async def seal(sessions: Sessions, batch: int = SEAL_BATCH) -> int:
    """Seal every committed unsealed row; the number sealed. Returns 0 at once when
    another sealer holds the lock (it seals them)."""
    sealed = 0
    while True:
        count = await _seal_batch(sessions, batch)
        if count is None:
            return sealed
        sealed += count
        if count < batch:
            return sealed


async def _seal_batch(sessions: Sessions, batch: int) -> int | None:
    async with transaction(sessions) as session:
        if not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEAL_LOCK}):
            return None
        head = (
            await session.execute(text("SELECT chain_seq, row_hash FROM audit_chain_head"))
        ).first()
        seq, previous = (head.chain_seq, head.row_hash) if head else (0, GENESIS)
        rows = (
            await session.execute(
                text(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE chain_seq IS NULL ORDER BY id LIMIT :n"
                ),
                {"n": batch},
            )
        ).all()
        if not rows:
            return 0
        ids, seqs, hashes = [], [], []
        for row in rows:
            seq += 1
            previous = link(previous, row, seq)
            ids.append(row.id)
            seqs.append(seq)
            hashes.append(previous)
        await session.execute(
            text(
                "UPDATE audit_log a SET chain_seq = u.seq, row_hash = u.hash "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[]), "
                "CAST(:hashes AS text[])) AS u(id, seq, hash) WHERE a.id = u.id"
            ),
            {"ids": ids, "seqs": seqs, "hashes": hashes},
        )
        await session.execute(
            text(
                "INSERT INTO audit_chain_head (id, chain_seq, row_hash, sealed_at) "
                "VALUES (1, :seq, :hash, :at) ON CONFLICT (id) DO UPDATE "
                "SET chain_seq = :seq, row_hash = :hash, sealed_at = :at"
            ),
            {"seq": seq, "hash": previous, "at": now()},
        )
        return len(rows)


@dataclass
class Verdict:
    sealed: int = 0
    unsealed: int = 0
    problems: list[str] = field(default_factory=list)


async def verify(session: AsyncSession) -> Verdict:
    """Walk the sealed chain in order; stop at the first row that does not match."""
    verdict = Verdict()
    verdict.unsealed = (
        await session.scalar(text("SELECT count(*) FROM audit_log WHERE chain_seq IS NULL")) or 0
    )
    erased = set(
        (await session.scalars(text("SELECT id FROM users WHERE status = 'erased'"))).all()
    )
    previous, expected = GENESIS, 1
    result = await session.stream(
        text(
            f"SELECT {_COLUMNS}, personal, chain_seq, row_hash FROM audit_log "
            "WHERE chain_seq IS NOT NULL ORDER BY chain_seq"
        )
    )
    async for row in result:
        problem = _check(row, previous, expected, erased)
        if problem:
            verdict.problems.append(problem)
            await result.close()
            return verdict
        previous, expected = row.row_hash, expected + 1
        verdict.sealed += 1
    head = (await session.execute(text("SELECT chain_seq, row_hash FROM audit_chain_head"))).first()
    if head is not None and (head.chain_seq, head.row_hash) != (verdict.sealed, previous):
        verdict.problems.append(
            f"the chain ends at #{verdict.sealed} but its head is #{head.chain_seq}: "
            "sealed rows at its end were deleted or changed"
        )
    return verdict


def _check(row: Any, previous: str, expected: int, erased: set[int]) -> str | None:
    where = f"audit row id {row.id} (chain #{row.chain_seq})"
    if row.chain_seq != expected:
        return f"{where}: expected chain #{expected}; a sealed row before it was deleted"
    if link(previous, row, row.chain_seq) != row.row_hash:
        return f"{where}: its content or its link to the previous row does not match its hash"
    if row.personal is not None and digest(row.personal) != row.personal_digest:
        return f"{where}: its personal data does not match its digest"
    if row.personal is None and row.personal_digest is not None and row.subject_id not in erased:
        return f"{where}: its personal data was removed, but user {row.subject_id} was not erased"
    return None
