"""Declarative base and the column types every table shares."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from sqlalchemy import BigInteger, DateTime, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


IdPk = Annotated[int, mapped_column(BigInteger, primary_key=True, autoincrement=True)]
Minor = Annotated[int, mapped_column(BigInteger)]  # money in minor units
Currency = Annotated[str, mapped_column(String(3))]
CreatedAt = Annotated[
    datetime, mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
]
# A moment: `At` always known, `When` null until it happens.
At = Annotated[datetime, mapped_column(DateTime(timezone=True))]
When = Annotated[datetime | None, mapped_column(DateTime(timezone=True))]


def enum_check(column: str, values: type[enum.StrEnum]) -> str:
    """A CHECK clause for a text column that holds one of an enum's values."""
    listed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"
