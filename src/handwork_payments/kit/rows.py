"""The row lock every state change starts with: `SELECT ... FOR UPDATE` by primary key.

`populate_existing`: the session may hold a copy of the row read before the lock was taken;
a decision made under the lock must see the row as it is now, so the copy is overwritten."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

Row = TypeVar("Row")


async def lock_row_or_none(session: AsyncSession, model: type[Row], row_id: int) -> Row | None:
    return await session.get(model, row_id, with_for_update=True, populate_existing=True)


async def lock_row(session: AsyncSession, model: type[Row], row_id: int) -> Row:
    """For a row known to exist: NoResultFound when it does not."""
    return await session.get_one(model, row_id, with_for_update=True, populate_existing=True)


async def lock_first(session: AsyncSession, query: Select[Row]) -> Row | None:
    """The first row `query` finds (None when none), under the same lock: for rows found by
    something other than their id."""
    return await session.scalar(query.with_for_update().execution_options(populate_existing=True))
