"""skip/limit lists: {"items", "total", "skip", "limit"}; limit 1-100 (default 50)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
Out = TypeVar("Out")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    skip: int
    limit: int


class PageParams(BaseModel):
    skip: int
    limit: int


async def page_params(  # async: a plain def runs in FastAPI's thread pool
    skip: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> PageParams:
    return PageParams(skip=skip, limit=limit)


PageDep = Annotated[PageParams, Depends(page_params)]


async def paginate(
    session: AsyncSession, query: Select[T], page: PageParams
) -> tuple[list[T], int]:
    """The page and the number of rows in all pages, in one round trip: the count is an
    uncorrelated subquery (run once, by its own plan) that every row of the page carries.
    A page past the end has no row to carry it: counted apart then."""
    total_of_all = (
        select(func.count())
        .select_from(query.order_by(None).subquery())
        .correlate(None)
        .scalar_subquery()
    )
    rows = (
        await session.execute(query.add_columns(total_of_all).offset(page.skip).limit(page.limit))
    ).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][1])
    if page.skip == 0:
        return [], 0
    total = await session.scalar(select(total_of_all))
    return [], int(total or 0)


async def page_of(
    session: AsyncSession, query: Select[T], page: PageParams, show: Callable[[T], Out]
) -> Page[Out]:
    """The page of `query` that `page` asks for, each row shown by `show`."""
    rows, total = await paginate(session, query, page)
    return Page(items=[show(row) for row in rows], total=total, skip=page.skip, limit=page.limit)
