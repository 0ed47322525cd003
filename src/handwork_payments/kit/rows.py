"""Rows by primary key, and the row lock every state change starts with: `SELECT ... FOR
UPDATE` by primary key.

`populate_existing`: the session may hold a copy of the row read before the lock was taken;
a decision made under the lock must see the row as it is now, so the copy is overwritten.

The statements by id are built once per model and process: `session.get` builds and
annotates a new statement on every call, which cost more Python than its round trip
(measured on the money path: a fifth of a payout request's CPU went to such reads)."""

from __future__ import annotations

from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

Row = TypeVar("Row")
Columns = TypeVarTuple("Columns")


_BY_ID: dict[tuple[type[Any], bool], Select[Any]] = {}


def locking(query: Select[*Columns], of: Any = None) -> Select[*Columns]:
    """`query` taking its rows' locks (those of `of` only, when given), its rows read as they
    are now even where the session holds a copy: every locking read goes through here."""
    return query.with_for_update(of=of).execution_options(populate_existing=True)


def _by_id(model: type[Any], lock: bool) -> Select[Any]:
    query = _BY_ID.get((model, lock))
    if query is None:
        query = select(model).where(model.id == bindparam("id"))
        query = _BY_ID[(model, lock)] = locking(query) if lock else query
    return query


async def row_or_none(session: AsyncSession, model: type[Row], row_id: int) -> Row | None:
    """The row with this id, in one statement built once (`session.get` builds one per
    call). As with any unlocked read, a copy the session holds already is returned as it
    is: read-only paths use a session of their own."""
    found: Row | None = await session.scalar(_by_id(model, False), {"id": row_id})
    return found


async def lock_row_or_none(session: AsyncSession, model: type[Row], row_id: int) -> Row | None:
    found: Row | None = await session.scalar(_by_id(model, True), {"id": row_id})
    return found


async def lock_row(session: AsyncSession, model: type[Row], row_id: int) -> Row:
    """For a row known to exist: NoResultFound when it does not."""
    found: Row = (await session.execute(_by_id(model, True), {"id": row_id})).scalar_one()
    return found


async def lock_first(session: AsyncSession, query: Select[Row]) -> Row | None:
    """The first row `query` finds (None when none), under the same lock: for rows found by
    something other than their id."""
    return await session.scalar(locking(query))
