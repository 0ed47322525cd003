"""Reading a worker's balance and earnings summary must cost the same whatever the size of
the ledger: balances are rows updated with their postings, not sums over postings.

Measures the earnings summary (the same queries as GET /payments/earnings/worker) with a
small ledger, grows the ledger by LEDGER_ROWS postings belonging to other accounts, and
measures again. Prints both and their ratio (about 1.0 is the claim). Run with
`python -m bench.balances` (or `make bench`)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from sqlalchemy import text

from handwork_payments import migrate
from handwork_payments.analytics.repository import worker_totals
from handwork_payments.ledger.verify import verify
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from tests.database import fresh_database

LEDGER_ROWS = int(os.environ.get("BENCH_LEDGER_ROWS", "1000000"))
READS = 300


async def seed_worker(runtime: Runtime) -> int:
    """A worker with a real released payment, made through the services."""
    from handwork_payments.bookings import service as bookings
    from handwork_payments.models import PaymentMethod, Role, User
    from handwork_payments.payments import service as payments

    async with runtime.sessions() as session, session.begin():
        client = User(email="c@x.io", password_hash="-", full_name="C", role=Role.CLIENT)
        worker = User(email="w@x.io", password_hash="-", full_name="W", role=Role.WORKER)
        session.add_all([client, worker])
    booking = await bookings.create(
        runtime, client, worker_id=worker.id, title="t", amount=10000, currency="USD"
    )
    payment, _ = await payments.create_hold(
        runtime,
        client,
        method=PaymentMethod.STRIPE,
        booking_id=booking.id,
        amount=10000,
        currency="USD",
        payment_method="pm_card_visa",
    )
    await payments.release(runtime, payment.id, actor=client)
    return worker.id


async def read_latency_ms(runtime: Runtime, worker_id: int) -> float:
    samples = []
    async with runtime.sessions() as session:
        for _ in range(READS):
            start = time.perf_counter()
            totals = await worker_totals(session, worker_id, "USD")
            samples.append((time.perf_counter() - start) * 1000)
            assert totals["available"] == 9500
    return statistics.median(samples)


async def grow_ledger(runtime: Runtime, rows: int) -> None:
    """`rows` postings in balanced pairs between other workers' accounts, loaded with the
    append-only and balance triggers off (the data is balanced by construction)."""
    async with runtime.engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text(
                "INSERT INTO ledger_accounts (code, kind, owner_id, currency, balance) "
                "SELECT 'worker_available:' || g || '\\:USD', 'worker_available', g, 'USD', 0 "
                "FROM generate_series(1000000, 1000999) g"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO journal_entries (key, kind, description) "
                "SELECT 'bench-' || g, 'bench', 'bench' FROM generate_series(1, :n) g"
            ),
            {"n": rows // 2},
        )
        await conn.execute(
            text(
                "INSERT INTO postings (entry_id, account_id, amount, currency) "
                "SELECT e.id, a.id, s.sign * 100, 'USD' FROM journal_entries e "
                "CROSS JOIN (VALUES (1), (-1)) s(sign) "
                "JOIN ledger_accounts a ON a.code = 'worker_available:' "
                "  || (1000000 + (e.id * 7 + (s.sign + 1) / 2) % 1000) || '\\:USD' "
                "WHERE e.kind = 'bench'"
            )
        )
        await conn.execute(
            text(
                "UPDATE ledger_accounts a SET balance = s.total FROM "
                "(SELECT account_id, sum(amount) AS total FROM postings GROUP BY 1) s "
                "WHERE s.account_id = a.id"
            )
        )
    autocommit = runtime.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        await conn.execute(text("VACUUM ANALYZE"))


async def main() -> None:
    with fresh_database() as url:
        migrate.upgrade(url)
        settings = Settings(_env_file=None, database_url=url, jwt_secret="x" * 32)  # type: ignore[call-arg]
        runtime = Runtime.build(settings, url)
        try:
            worker_id = await seed_worker(runtime)
            small = await read_latency_ms(runtime, worker_id)
            async with runtime.engine.connect() as conn:
                before = (await conn.execute(text("SELECT count(*) FROM postings"))).scalar_one()
            started = time.perf_counter()
            await grow_ledger(runtime, LEDGER_ROWS)
            load_seconds = time.perf_counter() - started
            async with runtime.engine.connect() as conn:
                after = (await conn.execute(text("SELECT count(*) FROM postings"))).scalar_one()
            large = await read_latency_ms(runtime, worker_id)
            async with runtime.sessions() as session:
                problems = await verify(session)
            print(f"earnings summary, median of {READS} reads")
            print(f"  ledger of {before:>9,} postings: {small:.3f} ms")
            print(
                f"  ledger of {after:>9,} postings: {large:.3f} ms (loaded in {load_seconds:.1f} s)"
            )
            print(f"  ratio large/small: {large / small:.2f} (1.00 = independent of ledger size)")
            print(f"  ledger invariants after the load: {problems or 'all hold'}")
        finally:
            await runtime.aclose()


if __name__ == "__main__":
    asyncio.run(main())
