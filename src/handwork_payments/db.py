"""Engine, sessions and the embedded PostgreSQL used when DATABASE_URL is not set."""

from __future__ import annotations

import atexit
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from handwork_payments.settings import Settings

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]

_embedded: Any = None  # the pgserver handle, kept alive for the process


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL as SQLAlchemy's psycopg (v3) dialect."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got {url.split(':')[0]}")


def libpq_url(url: str) -> str:
    """The same URL as plain libpq understands it (procrastinate, psql)."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+psycopg://") :]


def start_embedded(data_dir: str) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir` and return its URL."""
    global _embedded
    # Imported here: production never needs the wheel's binaries. Its import warns when
    # XDG_RUNTIME_DIR is unset (containers, CI) and then works all the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    # initdb's and pg_ctl's whole output is logged by pgserver at INFO: not for people.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    _embedded = pgserver.get_server(str(path), cleanup_mode="stop")
    uri: str = _embedded.get_uri()
    log.info("DATABASE_URL is not set: using the embedded PostgreSQL in %s", path)
    return uri


def embedded_dir() -> str | None:
    """The data folder of the embedded PostgreSQL this process started, if any."""
    return str(_embedded.pgdata) if _embedded is not None else None


def stop_embedded() -> None:
    """Stop the embedded PostgreSQL this process started (pgserver otherwise stops it at
    exit, when a caller may already have deleted its data folder, and then cannot)."""
    global _embedded
    if _embedded is not None:
        _embedded.cleanup()
        atexit.unregister(_embedded._cleanup)  # done: its folder may be gone at exit
        _embedded = None


def database_url(settings: Settings) -> str:
    return settings.database_url or start_embedded(settings.embedded_pg_dir)


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A failed statement's error (logged) must not print its parameters: tokens,
        # emails, encrypted metadata.
        hide_parameters=True,
    )


def make_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def transaction(sessions: Sessions) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends normally, rolls back otherwise.
    Services never commit; the request, the task or a flow around a provider call does."""
    async with sessions() as session, session.begin():
        yield session
