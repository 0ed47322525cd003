"""What ties an account to a person, kept as keyed digests (risk_signals): the client IPs
it registered and logged in from, the emails and payout destinations money could reach it
at, the cards it paid with. Two accounts sharing one are looked at as one person by the
rules (a client paying its own worker account). Digests, not values: the rules only ever
compare them, and nobody reading the table learns an address (the key is the pseudonym
key, privacy/pseudonyms.py)."""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ScalarSelect,
    Select,
    String,
    and_,
    bindparam,
    distinct,
    exists,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from handwork_payments.db import transaction
from handwork_payments.models import Booking, RiskSignal, SignalKind
from handwork_payments.privacy.pseudonyms import key_of
from handwork_payments.runtime import Runtime

# Addresses that say nothing of a person (the test client, a missing peer address).
UNKNOWN_IPS = frozenset({"unknown", "testclient", ""})


def digest(key: bytes, kind: SignalKind, value: str) -> str:
    mac = hmac.new(key, f"{kind}:{value.strip().lower()}".encode(), hashlib.sha256)
    return mac.hexdigest()


def runtime_key(runtime: Runtime) -> bytes:
    return key_of(runtime.settings, runtime.jwt_secret)


# Card fingerprints are the provider's own opaque tokens, recorded where a hold is applied
# (webhooks too, with no runtime at hand): a fixed key is enough, nothing to hide.
CARD_KEY = b"handwork-card-fingerprints"


async def note(session: AsyncSession, user_id: int, kind: SignalKind, digest_: str) -> None:
    """Record the signal once per user (a repeated login from one address adds nothing)."""
    await session.execute(
        insert(RiskSignal)
        .values(user_id=user_id, kind=kind, digest=digest_)
        .on_conflict_do_nothing(index_elements=["user_id", "kind", "digest"])
    )


async def note_value(
    session: AsyncSession, key: bytes, user_id: int, kind: SignalKind, value: str | None
) -> None:
    if value is None or (kind == SignalKind.IP and value in UNKNOWN_IPS):
        return
    await note(session, user_id, kind, digest(key, kind, value))


def shared_kinds(user_id: ColumnElement[int], others: Any) -> ScalarSelect[Any]:
    """SQL: the kinds of signal the account `user_id` (a bound parameter) shares with any
    of `others` (parameters, or a subquery of ids), as a sorted array; NULL when nothing
    ties them."""
    mine, theirs = aliased(RiskSignal), aliased(RiskSignal)
    return (
        select(func.array_agg(aggregate_order_by(distinct(mine.kind), mine.kind)))
        .join(theirs, and_(theirs.kind == mine.kind, theirs.digest == mine.digest))
        .where(mine.user_id == user_id, theirs.user_id.in_(others), theirs.user_id != user_id)
        .scalar_subquery()
    )


async def note_card(
    session: AsyncSession, card_digest: str, client_id: int, worker_id: int
) -> bool:
    """Record the client's card, and answer whether another client account paid this
    worker with it (one person paying their own worker account through several client
    accounts). One statement: the insert rides along as a CTE."""
    params = {"client_id": client_id, "digest": card_digest, "worker_id": worker_id}
    return bool(await session.scalar(_note_card(), params))


@cache
def _note_card() -> Select[Any]:
    """note_card's statement, built once per process (with its aliases and CTE, built per
    call it cost more Python than its execution)."""
    client_id = bindparam("client_id", type_=BigInteger)
    card_digest = bindparam("digest", type_=String)
    noted = (
        insert(RiskSignal)
        .values(user_id=client_id, kind=SignalKind.CARD, digest=card_digest)
        .on_conflict_do_nothing(index_elements=["user_id", "kind", "digest"])
        .cte("noted")
    )
    other = aliased(RiskSignal)
    return select(
        exists().where(
            other.kind == SignalKind.CARD,
            other.digest == card_digest,
            other.user_id != client_id,
            exists().where(
                Booking.client_id == other.user_id,
                Booking.worker_id == bindparam("worker_id", type_=BigInteger),
            ),
        )
    ).add_cte(noted)


async def note_address(runtime: Runtime, user_id: int, client_ip: str) -> None:
    """A login's client IP, in its own transaction (a login writes nothing else of it)."""
    async with transaction(runtime.sessions) as session:
        await note_value(session, runtime_key(runtime), user_id, SignalKind.IP, client_ip)
