"""A PostgreSQL for the test session: a fresh database on the CI server at
127.0.0.1:5432 when it answers (TEST_DATABASE_ADMIN_URL overrides where), otherwise an
embedded server from the pgserver wheel. Each session gets its own database, so parallel
runs never meet, and drops it at the end."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

CI_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextmanager
def admin_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_ADMIN_URL", CI_ADMIN_URL)
    if _reachable(url):
        yield url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="hp-test-pg-") as data_dir:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@contextmanager
def fresh_database() -> Iterator[str]:
    with admin_url() as admin:
        name = f"hp_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(admin, name)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
