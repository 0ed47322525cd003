"""The audit chain: append-only, sealed in order, tampering named by `audit verify`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from handwork_payments.audit import chain
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.runtime import Runtime


async def _write(runtime: Runtime, count: int, start: int = 1) -> None:
    for i in range(start, start + count):
        async with transaction(runtime.sessions) as session:
            await record(
                session,
                actor_id=None,
                action="test.entry",
                object_type="payment",
                object_id=i,
                after={"amount": i * 100, "status": "held"},
            )


async def _verdict(runtime: Runtime) -> chain.Verdict:
    async with runtime.sessions() as session:
        return await chain.verify(session)


async def _tamper(runtime: Runtime, sql: str) -> None:
    """What someone with the database's owner role can do: triggers off, then change."""
    async with runtime.engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(sql))


async def test_rows_are_sealed_in_order_and_verify(runtime: Runtime) -> None:
    await _write(runtime, 5)
    assert (await _verdict(runtime)).unsealed == 5
    assert await chain.seal(runtime.sessions) == 5
    verdict = await _verdict(runtime)
    assert (verdict.sealed, verdict.unsealed, verdict.problems) == (5, 0, [])
    await _write(runtime, 2, start=6)
    assert await chain.seal(runtime.sessions, batch=1) == 2
    async with runtime.sessions() as session:
        seqs = (await session.scalars(text("SELECT chain_seq FROM audit_log ORDER BY id"))).all()
    assert seqs == [1, 2, 3, 4, 5, 6, 7]
    assert (await _verdict(runtime)).sealed == 7


@pytest.mark.parametrize(
    "sql",
    [
        'UPDATE audit_log SET after = \'{"amount": 1, "status": "held"}\' WHERE id = 3',
        "UPDATE audit_log SET actor_kind = 'user' WHERE id = 3",
        "DELETE FROM audit_log WHERE id = 3",
    ],
)
async def test_an_app_role_cannot_change_or_delete_a_row(runtime: Runtime, sql: str) -> None:
    await _write(runtime, 4)
    await chain.seal(runtime.sessions)
    with pytest.raises(DBAPIError, match="append-only"):
        async with runtime.engine.begin() as conn:
            await conn.execute(text(sql))


async def test_sealed_links_cannot_be_rewritten(runtime: Runtime) -> None:
    await _write(runtime, 2)
    await chain.seal(runtime.sessions)
    with pytest.raises(DBAPIError, match="sealed"):
        async with runtime.engine.begin() as conn:
            await conn.execute(text("UPDATE audit_log SET row_hash = repeat('0', 64)"))


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        # Edited with triggers disabled.
        (
            'UPDATE audit_log SET after = \'{"amount": 1, "status": "held"}\' WHERE id = 3',
            "audit row id 3 (chain #3): its content",
        ),
        # Deleted in the middle.
        ("DELETE FROM audit_log WHERE id = 3", "audit row id 4 (chain #4): expected chain #3"),
        # Deleted at the end.
        ("DELETE FROM audit_log WHERE id = 5", "the chain ends at #4 but its head is #5"),
        # Two rows swapped.
        (
            "UPDATE audit_log SET chain_seq = -1 WHERE id = 2; "
            "UPDATE audit_log SET chain_seq = 2 WHERE id = 3; "
            "UPDATE audit_log SET chain_seq = 3 WHERE id = 2",
            "audit row id 3 (chain #2)",
        ),
        # Personal data rewritten.
        (
            'UPDATE audit_log SET personal = \'{"nonce": "x"}\' WHERE id = 1',
            "audit row id 1 (chain #1): its personal data does not match",
        ),
        # Personal data dropped for someone who was not erased.
        (
            "UPDATE audit_log SET personal = NULL WHERE id = 1",
            "audit row id 1 (chain #1): its personal data was removed",
        ),
    ],
)
async def test_tampering_is_named(runtime: Runtime, sql: str, named: str) -> None:
    async with transaction(runtime.sessions) as session:
        await record(
            session,
            actor_id=None,
            action="auth.login_failed",
            object_type="user",
            object_id=0,
            personal={"client_ip": "203.0.113.9", "email": "who@example.com"},
            subject_id=1,
        )
    await _write(runtime, 4, start=2)
    await chain.seal(runtime.sessions)
    assert (await _verdict(runtime)).problems == []
    await _tamper(runtime, sql)
    problems = (await _verdict(runtime)).problems
    assert len(problems) == 1 and problems[0].startswith(named), problems
    await _tamper(runtime, "DELETE FROM audit_log; DELETE FROM audit_chain_head")


async def test_concurrent_writers_and_sealers_leave_one_intact_chain(runtime: Runtime) -> None:
    async def writer(n: int) -> None:
        await _write(runtime, 20, start=n * 100)

    async def sealer() -> None:
        for _ in range(10):
            await chain.seal(runtime.sessions, batch=7)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(writer(n) for n in range(1, 5)), sealer(), sealer())
    await chain.seal(runtime.sessions)
    verdict = await _verdict(runtime)
    assert (verdict.sealed, verdict.unsealed, verdict.problems) == (80, 0, [])


async def test_a_write_costs_one_insert_and_no_lock(runtime: Runtime) -> None:
    """What the chain adds to a money transaction: nothing but the INSERT it had."""
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    from sqlalchemy import event

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with transaction(runtime.sessions) as session:
            await record(session, actor_id=None, action="t", object_type="payment", object_id=1)
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    assert [s.split()[0] for s in statements] == ["INSERT"]


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "handwork_payments.cli", "audit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_the_command_exits_non_zero_naming_the_row(
    runtime: Runtime, database_url: str
) -> None:
    await _write(runtime, 3)
    ok = await asyncio.to_thread(_cli, database_url, "verify", "--seal")
    assert ok.returncode == 0, ok.stderr
    assert "audit chain ok: 3 rows sealed, 0 not sealed yet" in ok.stdout
    await _tamper(runtime, "UPDATE audit_log SET object_id = 9 WHERE id = 2")
    broken = await asyncio.to_thread(_cli, database_url, "verify")
    assert broken.returncode == 1
    assert "BROKEN audit row id 2 (chain #2)" in broken.stderr
    await _tamper(runtime, "DELETE FROM audit_log; DELETE FROM audit_chain_head")
