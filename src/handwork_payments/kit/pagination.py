"""skip/limit lists: {"items", "total", "skip", "limit"}; limit 1-100 (default 50)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, UnaryExpression, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import operators

from handwork_payments.kit.errors import BadRequest

T = TypeVar("T")
Out = TypeVar("Out")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    skip: int
    limit: int
    # The id to pass as `starting_after` for the next page (keyset pagination: as fast at
    # the millionth row as at the first); null on the last page.
    next_starting_after: int | None = None


class PageParams(BaseModel):
    skip: int
    limit: int
    starting_after: int | None = None


async def page_params(  # async: a plain def runs in FastAPI's thread pool
    skip: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    starting_after: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> PageParams:
    return PageParams(skip=skip, limit=limit, starting_after=starting_after)


PageDep = Annotated[PageParams, Depends(page_params)]


@dataclass(frozen=True)
class Rows(Generic[T]):
    """One page's rows, the list's total and where the next page starts."""

    rows: list[T]
    total: int
    next_starting_after: int | None
    params: PageParams

    def page(self, items: list[Out]) -> Page[Out]:
        return Page(
            items=items,
            total=self.total,
            skip=self.params.skip,
            limit=self.params.limit,
            next_starting_after=self.next_starting_after,
        )


async def paginate(session: AsyncSession, query: Select[T], page: PageParams) -> Rows[T]:
    """The page and the number of rows in all pages, in one round trip: the count is an
    uncorrelated subquery (run once, by its own plan) that every row of the page carries.
    A page past the end has no row to carry it: counted apart then. With `starting_after`
    the page begins after that id in the list's order (an index range, not an OFFSET that
    reads every row before it); `skip` then counts from there."""
    total_of_all = (
        select(func.count())
        .select_from(query.order_by(None).subquery())
        .correlate(None)
        .scalar_subquery()
    )
    key = _keyset(query)
    paged = query
    if page.starting_after is not None:
        paged = query.where(key.after(page.starting_after))
    # One row more than the page: whether another page follows.
    rows = (
        await session.execute(
            paged.add_columns(total_of_all).offset(page.skip).limit(page.limit + 1)
        )
    ).all()
    if not rows:
        # An empty first page: the list is empty. Past its start: count it apart.
        from_start = page.skip == 0 and page.starting_after is None
        total = 0 if from_start else int(await session.scalar(select(total_of_all)) or 0)
        return Rows([], total, None, page)
    more = len(rows) > page.limit
    found = [row[0] for row in rows[: page.limit]]
    following = key.id_of(found[-1]) if more and key.usable else None
    return Rows(found, int(rows[0][1]), following, page)


@dataclass(frozen=True)
class _Keyset:
    """How a list ordered by its rows' id (newest or oldest first) pages by id."""

    column: ColumnElement[int] | None
    descending: bool

    @property
    def usable(self) -> bool:
        return self.column is not None

    def after(self, row_id: int) -> ColumnElement[bool]:
        if self.column is None:
            raise BadRequest("This list is not ordered by id: page it with skip")
        return self.column < row_id if self.descending else self.column > row_id

    def id_of(self, row: object) -> int:
        return int(getattr(row, "id"))  # noqa: B009 (any mapped row with an id)


def _keyset(query: Select[Any]) -> _Keyset:
    """The list's keyset: its first ORDER BY term when that is the listed entity's id."""
    entity = query.column_descriptions[0].get("entity")
    identity = getattr(entity, "id", None) if entity is not None else None
    # SQLAlchemy offers no public reader of a statement's ORDER BY.
    terms = query._order_by_clauses
    if identity is None or not terms:
        return _Keyset(None, False)
    first = terms[0]
    descending = isinstance(first, UnaryExpression) and first.modifier is operators.desc_op
    column = first.element if isinstance(first, UnaryExpression) else first
    if column.compare(identity.expression):
        return _Keyset(identity, descending)
    return _Keyset(None, False)


async def page_of(
    session: AsyncSession, query: Select[T], page: PageParams, show: Callable[[T], Out]
) -> Page[Out]:
    """The page of `query` that `page` asks for, each row shown by `show`."""
    found = await paginate(session, query, page)
    return found.page([show(row) for row in found.rows])
