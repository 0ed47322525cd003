"""The ledger's guards in the database and its invariant checks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from handwork_payments.db import transaction
from handwork_payments.ledger import service as ledger
from handwork_payments.ledger.verify import CHECKS, verify
from handwork_payments.runtime import Runtime
from tests.helpers import Api


async def test_an_unbalanced_entry_is_refused_at_commit(runtime: Runtime) -> None:
    with pytest.raises(DBAPIError, match="does not balance"):
        async with transaction(runtime.sessions) as session:
            a = await ledger.fee_revenue(session, "USD")
            b = await ledger.clearing(session, "stripe", "USD")
            await session.execute(
                text("INSERT INTO journal_entries (key, kind, description) VALUES ('x', 'k', 'd')")
            )
            for account, amount in ((a.id, 100), (b.id, -99)):
                await session.execute(
                    text(
                        "INSERT INTO postings (entry_id, account_id, amount, currency) "
                        "SELECT id, :a, :m, 'USD' FROM journal_entries WHERE key = 'x'"
                    ),
                    {"a": account, "m": amount},
                )
    async with runtime.sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM postings"))).scalar_one() == 0


async def test_an_entry_needs_two_postings(runtime: Runtime) -> None:
    with pytest.raises(DBAPIError, match="fewer than two postings"):
        async with transaction(runtime.sessions) as session:
            await session.execute(
                text("INSERT INTO journal_entries (key, kind, description) VALUES ('y', 'k', 'd')")
            )


async def test_python_refuses_an_unbalanced_entry_before_the_database(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        a = await ledger.fee_revenue(session, "USD")
        b = await ledger.clearing(session, "stripe", "USD")
        with pytest.raises(AssertionError, match="unbalanced"):
            await ledger.post(session, key="z", kind="k", description="d", lines=[(a, 5), (b, -4)])
        await session.rollback()


async def test_postings_and_entries_are_append_only(api: Api, runtime: Runtime) -> None:
    await api.held_payment("10.00")
    for statement in (
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "UPDATE journal_entries SET description = 'edited'",
        "DELETE FROM journal_entries",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with transaction(runtime.sessions) as session:
                await session.execute(text(statement))


async def test_verify_names_what_is_broken_and_the_cli_fails(
    api: Api, runtime: Runtime, database_url: str
) -> None:
    client, _, payment = await api.held_payment("20.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    async with runtime.sessions() as session:
        assert await verify(session) == []

    cli = [sys.executable, "-m", "handwork_payments.cli", "ledger", "verify"]
    env = {**os.environ, "DATABASE_URL": database_url}
    ok = await asyncio.to_thread(
        subprocess.run, cli, env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert f"{len(CHECKS)} invariants hold" in ok.stdout

    # Tamper with a balance row and a payment behind the ledger's back.
    async with transaction(runtime.sessions) as session:
        await session.execute(
            text("UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'worker_available'")
        )
        await session.execute(
            text("UPDATE payments SET refunded_amount = 1 WHERE id = :id"), {"id": payment["id"]}
        )
    try:
        async with runtime.sessions() as session:
            problems = await verify(session)
        assert any(p.startswith("1b.") and "worker_available" in p for p in problems), problems
        assert any(p.startswith("3.") for p in problems), problems
        assert any(p.startswith("7.") for p in problems), problems
        broken = await asyncio.to_thread(
            subprocess.run, cli, env=env, capture_output=True, text=True, timeout=60
        )
        assert broken.returncode == 1
        assert "worker_available" in broken.stderr
    finally:
        async with transaction(runtime.sessions) as session:
            await session.execute(
                text(
                    "UPDATE ledger_accounts SET balance = balance - 1 "
                    "WHERE kind = 'worker_available'"
                )
            )
            await session.execute(
                text("UPDATE payments SET refunded_amount = 0 WHERE id = :id"),
                {"id": payment["id"]},
            )
