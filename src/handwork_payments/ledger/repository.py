"""SQL of the ledger."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from handwork_payments.kit.errors import Conflict
from handwork_payments.kit.rows import lock_first
from handwork_payments.models import AccountKind, LedgerAccount

# Accounts never change once created (code, kind, owner, currency; only balances move, and
# balances are never read from here): each process remembers the ones it has seen, per
# database, so a posting resolves its accounts without a round trip. Only accounts whose
# creating transaction is known to have committed enter the cache (see _promote), so a
# rolled-back account is never remembered; the posting statement checks every id against
# its code all the same (tests empty the tables under a running process). Bounded: escrow
# accounts are one per payment.
_ACCOUNTS: OrderedDict[tuple[str, str], tuple[int, str, str, int | None]] = OrderedDict()
_CACHE_SIZE = 20_000
_SEEN = "ledger_accounts_seen"


class StaleAccounts(Conflict):
    """An account remembered by this process is not in the database any more (emptied
    tables): the cache is dropped and the request may be retried."""


def forget_accounts() -> None:
    _ACCOUNTS.clear()


def _database(session: AsyncSession | Session) -> str:
    bind = session.bind
    if bind is None:
        return ""
    engine = bind if isinstance(bind, Engine | AsyncEngine) else bind.engine
    # The URL rendered once per engine: rendering it is a measurable part of a posting.
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    named = _URLS.get(sync)
    if named is None:
        named = _URLS[sync] = str(sync.url)
    return named


_URLS: WeakKeyDictionary[Engine, str] = WeakKeyDictionary()


def _remember_after_commit(session: AsyncSession, account: LedgerAccount) -> None:
    seen = session.info.setdefault(_SEEN, {})
    seen[(_database(session), account.code)] = (
        account.id,
        account.kind,
        account.currency,
        account.owner_id,
    )


@event.listens_for(Session, "after_commit")
def _promote(session: Session) -> None:
    for key, row in session.info.pop(_SEEN, {}).items():
        _ACCOUNTS[key] = row
        _ACCOUNTS.move_to_end(key)
    while len(_ACCOUNTS) > _CACHE_SIZE:
        _ACCOUNTS.popitem(last=False)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _: Any) -> None:
    session.info.pop(_SEEN, None)
    session.info.pop(_PLATFORM_DELTAS, None)


def _cached(session: AsyncSession, code: str) -> LedgerAccount | None:
    row = _ACCOUNTS.get((_database(session), code))
    if row is None:
        return None
    account_id, kind, currency, owner_id = row
    # Not attached to any session: it names the account; its balance is not read.
    return LedgerAccount(id=account_id, code=code, kind=kind, currency=currency, owner_id=owner_id)


async def get_or_create_account(
    session: AsyncSession, code: str, kind: AccountKind, currency: str, owner_id: int | None
) -> LedgerAccount:
    cached = _cached(session, code)
    if cached is not None:
        return cached  # the usual case: no round trip
    # ON CONFLICT keeps two transactions creating the same account from failing each other;
    # a new account (an escrow at its payment's hold) costs this one statement.
    account = (
        await session.execute(
            insert(LedgerAccount)
            .values(code=code, kind=kind, currency=currency, owner_id=owner_id, balance=0)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(LedgerAccount)
        )
    ).scalar_one_or_none()
    if account is None:
        account = (
            await session.execute(select(LedgerAccount).where(LedgerAccount.code == code))
        ).scalar_one()
    _remember_after_commit(session, account)
    return account


# The balances of the accounts `:moved` (each id checked against its code in `:codes`)
# move by `:deltas`. Their rows are locked in id order first (the sub-select locks as it
# returns its sorted rows), so concurrent statements touching the same accounts cannot
# deadlock. NO KEY UPDATE: a balance is no key, so other transactions' postings may still
# reference the row meanwhile.
_MOVE_BALANCES = """locked AS (
    SELECT id FROM ledger_accounts
    WHERE id = ANY(CAST(:moved AS bigint[])) AND code = ANY(CAST(:codes AS text[]))
    ORDER BY id FOR NO KEY UPDATE
), moved AS (
    UPDATE ledger_accounts a SET balance = a.balance + d.delta
    FROM locked, unnest(CAST(:moved AS bigint[]), CAST(:deltas AS bigint[])) AS d(id, delta)
    WHERE a.id = locked.id AND d.id = a.id
)"""

# One round trip for a whole entry: the entry, its postings, the balances of the accounts
# that belong to a payment or a worker, and the history rows.
_WRITE_ENTRY = text(f"""
WITH entry AS (
    INSERT INTO journal_entries (key, kind, description, payment_id, payout_id)
    VALUES (:key, :kind, :description, :payment_id, :payout_id)
    RETURNING id, created_at
), posted AS (
    INSERT INTO postings (entry_id, account_id, amount, currency)
    SELECT entry.id, p.account_id, p.amount, p.currency FROM entry,
        unnest(CAST(:accounts AS bigint[]), CAST(:amounts AS bigint[]),
               CAST(:currencies AS text[])) AS p(account_id, amount, currency)
), {_MOVE_BALANCES}, history AS (
    INSERT INTO payment_transactions (user_id, payment_id, payout_id, journal_entry_id,
        transaction_type, amount, currency, description, reference_id)
    SELECT h.user_id, :payment_id, :payout_id, entry.id, h.kind, h.amount, :currency,
        h.description, :key
    FROM entry, unnest(CAST(:h_users AS bigint[]), CAST(:h_kinds AS text[]),
        CAST(:h_amounts AS bigint[]), CAST(:h_descriptions AS text[]))
        AS h(user_id, kind, amount, description)
)
SELECT id, created_at, (SELECT count(*) FROM locked) AS accounts FROM entry
""")

# The platform's own accounts (clearing per provider and currency, fee revenue, provider
# fees, losses) are moved by nearly every entry: every concurrent payment queues on their
# rows. Their balances are therefore moved last, by one statement just before COMMIT, so
# that their row locks last that statement and the commit, not the rest of the
# transaction (measured: 16 connections of escrow flows spent most of their time waiting
# for these rows). Nothing reads these balances inside a money transaction.
PLATFORM_KINDS = frozenset(
    {
        AccountKind.PROVIDER_CLEARING,
        AccountKind.PLATFORM_FEE_REVENUE,
        AccountKind.PROVIDER_FEES,
        AccountKind.PLATFORM_LOSSES,
    }
)
_PLATFORM_DELTAS = "ledger_platform_deltas"
_MOVE_PLATFORM = text(f"WITH {_MOVE_BALANCES}\nSELECT count(*) FROM locked")

# account id -> (delta, code): what an entry moves, or what a transaction has deferred.
Deltas = dict[int, tuple[int, str]]


def _balance_params(deltas: Deltas) -> dict[str, list[Any]]:
    """_MOVE_BALANCES's parameters for the accounts that move (in id order)."""
    moved = sorted(a for a, (delta, _) in deltas.items() if delta)
    return {
        "moved": moved,
        "codes": [deltas[a][1] for a in moved],
        "deltas": [deltas[a][0] for a in moved],
    }


def _check_locked(found: int, params: dict[str, list[Any]]) -> None:
    """Every account the statement was to move was found under its code."""
    if found != len(params["moved"]):
        forget_accounts()
        raise StaleAccounts("The ledger changed under this request; retry it")


def _defer_platform(session: AsyncSession, deltas: Deltas) -> None:
    pending: Deltas = session.info.setdefault(_PLATFORM_DELTAS, {})
    for account_id, (delta, code) in deltas.items():
        pending[account_id] = (pending.get(account_id, (0, code))[0] + delta, code)


# A listener, not a step of db.transaction: every commit moves what its entries deferred,
# whoever commits (a command, a job, a test). Sync code here runs in the AsyncSession's
# greenlet, so the statement is executed on the transaction being committed. The session's
# pending changes are flushed first (SQLAlchemy would flush them after this listener): the
# platform rows' locks are then followed by COMMIT alone, which waits for no other lock.
@event.listens_for(Session, "before_commit")
def _move_platform(session: Session) -> None:
    params = _balance_params(session.info.pop(_PLATFORM_DELTAS, {}))
    if not params["moved"]:
        return
    session.flush()
    _check_locked(session.execute(_MOVE_PLATFORM, params).scalar_one(), params)


async def lock_existing(session: AsyncSession, code: str) -> LedgerAccount | None:
    """The account under a row lock, or None when it was never opened (not created)."""
    account = await lock_first(session, select(LedgerAccount).where(LedgerAccount.code == code))
    if account is not None:
        _remember_after_commit(session, account)
    return account


async def balance_of(session: AsyncSession, code: str) -> int:
    """An account's balance by its code; 0 for an account that does not exist yet."""
    value = (
        await session.execute(select(LedgerAccount.balance).where(LedgerAccount.code == code))
    ).scalar_one_or_none()
    return value or 0


async def write_entry(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    description: str,
    payment_id: int | None,
    payout_id: int | None,
    postings: list[tuple[int, int, str]],
    codes: dict[int, str],
    platform: frozenset[int],
    history: Sequence[tuple[int | None, str, int, str]],
) -> tuple[int, Any]:
    """Insert the entry, its postings and history rows and move the balances of the
    accounts not in `platform` in one statement; the platform's balances move at COMMIT
    (see PLATFORM_KINDS). Returns the entry's id and time. Pending changes of the session
    are flushed first, so that the balance rows' locks are taken as late as possible and
    the entry's references exist."""
    await session.flush()
    deltas: Deltas = {}
    for account_id, amount, _ in postings:
        deltas[account_id] = (deltas.get(account_id, (0, ""))[0] + amount, codes[account_id])
    _defer_platform(session, {a: d for a, d in deltas.items() if a in platform})
    balances = _balance_params({a: d for a, d in deltas.items() if a not in platform})
    row = (
        await session.execute(
            _WRITE_ENTRY,
            {
                "key": key,
                "kind": kind,
                "description": description,
                "payment_id": payment_id,
                "payout_id": payout_id,
                "accounts": [p[0] for p in postings],
                "amounts": [p[1] for p in postings],
                "currencies": [p[2] for p in postings],
                **balances,
                "currency": postings[0][2],
                "h_users": [h[0] for h in history],
                "h_kinds": [h[1] for h in history],
                "h_amounts": [h[2] for h in history],
                "h_descriptions": [h[3] for h in history],
            },
        )
    ).one()
    _check_locked(row.accounts, balances)
    return int(row.id), row.created_at


async def entry_exists(session: AsyncSession, key: str) -> bool:
    found = await session.execute(text("SELECT 1 FROM journal_entries WHERE key = :k"), {"k": key})
    return found.first() is not None
