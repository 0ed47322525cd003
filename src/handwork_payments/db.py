"""Engine, sessions and the embedded PostgreSQL used when DATABASE_URL is not set."""

from __future__ import annotations

import atexit
import logging
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
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


@dataclass
class StatementCount:
    """Round trips to the database, ours and those a simulated provider makes (a real
    provider makes none of them)."""

    ours: int = 0
    provider: int = 0


_counting: ContextVar[StatementCount | None] = ContextVar("statement_count", default=None)
_provider_side: ContextVar[bool] = ContextVar("provider_statements", default=False)


@contextmanager
def counting_statements() -> Iterator[StatementCount]:
    """Count the statements this task (and the tasks it starts) sends while the block
    runs: the statement budgets' tests and the bench's table."""
    count = StatementCount()
    token = _counting.set(count)
    try:
        yield count
    finally:
        _counting.reset(token)


@contextmanager
def provider_statements() -> Iterator[None]:
    """Statements sent in this block are a simulated provider's, counted apart."""
    token = _provider_side.set(True)
    try:
        yield
    finally:
        _provider_side.reset(token)


def _count(*_: Any) -> None:
    count = _counting.get()
    if count is None:
        return
    if _provider_side.get():
        count.provider += 1
    else:
        count.ours += 1


def make_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    engine = _engine(url, pool_size)
    event.listen(engine.sync_engine, "before_cursor_execute", _count)
    return engine


def _engine(url: str, pool_size: int) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        # At most `pool_size` connections, each kept open once made. No overflow: an
        # overflow connection is closed when it comes back to a full pool and opened again
        # by the next burst, a PostgreSQL backend started and authenticated each time
        # (measured at 0.6 ms of this process's CPU per read under 16 connections, and a
        # quarter of the reads' throughput). A request beyond the pool waits for one.
        pool_size=pool_size,
        max_overflow=0,
        # No ping at every checkout (a round trip each, several per request): a
        # connection the server dropped fails one statement, and SQLAlchemy then
        # invalidates the whole pool; connections are renewed every half hour anyway.
        pool_pre_ping=False,
        pool_recycle=1800,
        # An autocommit connection (reads, the user's row, single-statement writes) has no
        # transaction to roll back when it returns to the pool: no ROLLBACK call for it.
        skip_autocommit_rollback=True,
        # A failed statement's error (logged) must not print its parameters: tokens,
        # emails, encrypted metadata.
        hide_parameters=True,
    )


def make_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def make_autocommit_sessions(engine: AsyncEngine) -> Sessions:
    """Sessions on the same pool without BEGIN/COMMIT round trips: each statement commits
    by itself (reads, and writes that are one statement)."""
    return make_sessions(engine.execution_options(isolation_level="AUTOCOMMIT"))


@asynccontextmanager
async def transaction(sessions: Sessions) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends normally, rolls back otherwise.
    Services never commit; the request, the task or a flow around a provider call does."""
    async with sessions() as session, session.begin():
        yield session
