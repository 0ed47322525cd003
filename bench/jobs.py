"""What one worker process sustains, and how long a payout takes from `process` to
`completed`, on the built-in simulators.

Baselines, measured in the same run on the same database: a bare procrastinate App
running a job that does nothing (the queue's own cost), and the time from deferring such
a job to its end. Prints each figure and its ratio to the baseline. Run with
`python -m bench.jobs` (or `make bench`); BENCH_JOBS sets the number of jobs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator

import procrastinate
from sqlalchemy import func, select, text

from bench.servers import free_port
from handwork_payments import migrate
from handwork_payments.db import libpq_url, transaction
from handwork_payments.events.outbox import emit
from handwork_payments.ledger.verify import verify
from handwork_payments.models import (
    EventStatus,
    MarketplaceEvent,
    PaymentMethod,
    PayoutStatus,
    Role,
    User,
    WorkerPayout,
)
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from handwork_payments.worker import run_until_idle, running_worker
from tests.database import fresh_database

JOBS = int(os.environ.get("BENCH_JOBS", "300"))
LATENCY_SAMPLES = int(os.environ.get("BENCH_JOB_SAMPLES", "40"))
CONCURRENCY = 4  # the worker command's default


def settings_for(url: str, **more: object) -> Settings:
    return Settings(
        _env_file=None,
        database_url=url,
        **more,
        jwt_secret="x" * 32,
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
    )


async def users(runtime: Runtime) -> tuple[User, User, User]:
    async with runtime.sessions() as session, session.begin():
        client = User(email="c@x.io", password_hash="-", full_name="C", role=Role.CLIENT)
        worker = User(
            email="w@x.io",
            password_hash="-",
            full_name="W",
            role=Role.WORKER,
            stripe_account_id="acct_1Bench",
            paypal_email="w@example.com",
        )
        admin = User(email="a@x.io", password_hash="-", full_name="A", role=Role.ADMIN)
        session.add_all([client, worker, admin])
    return client, worker, admin


async def earnings(runtime: Runtime, client: User, worker: User, amount: int) -> None:
    """A released payment: `amount` minus the fee becomes available to pay out."""
    from handwork_payments.bookings import service as bookings
    from handwork_payments.payments import service as payments

    booking, _ = await bookings.create(
        runtime, client, worker_id=worker.id, title="t", amount=amount, currency="USD"
    )
    payment, _ = await payments.create_hold(
        runtime,
        client,
        method=PaymentMethod.STRIPE,
        booking_id=booking.id,
        amount=amount,
        currency="USD",
        payment_method="pm_card_visa",
    )
    await payments.release(runtime, payment.id, actor=client)


async def requested(runtime: Runtime, worker: User, method: PaymentMethod, n: int) -> list[int]:
    from handwork_payments.payouts import service as payouts

    return [
        (await payouts.request(runtime, worker, amount=100, method=method, currency="USD")).id
        for _ in range(n)
    ]


async def analyze_queue(runtime: Runtime) -> None:
    """The queue's statistics brought up to date after a burst of jobs, as autovacuum does
    on a live database (migration 0019: after every 1,000 changed jobs). On the statistics
    of a fresh database that saw no job yet, each fetch sorts every waiting job, and the
    bench would measure that (2,000 deliveries: 26 jobs/s instead of 134)."""
    async with runtime.read_sessions() as session:
        await session.execute(text("ANALYZE procrastinate_jobs"))


async def timed(run: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


async def status_of(runtime: Runtime, payout_id: int) -> PayoutStatus:
    async with runtime.sessions() as session:
        payout = await session.get(WorkerPayout, payout_id)
        assert payout is not None
        return payout.status


async def wait_for(check: Callable[[], Awaitable[bool]], limit_seconds: float = 30.0) -> None:
    deadline = time.perf_counter() + limit_seconds
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError("not reached in time")
        await asyncio.sleep(0.002)


# --- the baseline: procrastinate itself ---------------------------------------------------


def bare_app(url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=libpq_url(url)))

    @app.task(name="bench_noop", queue="bench")
    async def noop() -> None:
        return None

    return app


async def noop_throughput(app: procrastinate.App, runtime: Runtime, n: int) -> float:
    task = app.tasks["bench_noop"]
    async with app.open_async():
        for _ in range(n):
            await task.defer_async()
        await analyze_queue(runtime)
        seconds = await timed(
            lambda: app.run_worker_async(
                queues=["bench"],
                concurrency=CONCURRENCY,
                wait=False,
                install_signal_handlers=False,
            )
        )
    return n / seconds


async def noop_latencies(app: procrastinate.App, runtime: Runtime) -> list[float]:
    task = app.tasks["bench_noop"]
    samples = []
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=["bench"], concurrency=CONCURRENCY, install_signal_handlers=False
            )
        )
        try:
            for _ in range(LATENCY_SAMPLES):
                started = time.perf_counter()
                job_id = await task.defer_async()

                async def done(job_id: int = job_id) -> bool:
                    async with runtime.engine.connect() as conn:
                        status = await conn.scalar(
                            text("SELECT status FROM procrastinate_jobs WHERE id = :id"),
                            {"id": job_id},
                        )
                    return bool(status == "succeeded")

                await wait_for(done)
                samples.append(time.perf_counter() - started)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    return samples


# --- the real work: payouts -----------------------------------------------------------------


async def payout_throughput(runtime: Runtime, admin: User, worker: User, n: int) -> float:
    """`n` Stripe payouts processed (each enqueues one `send_payout` job), then one
    worker process's loop runs the queue dry."""
    from handwork_payments.payouts import service as payouts

    ids = await requested(runtime, worker, PaymentMethod.STRIPE, n)
    for payout_id in ids:
        await payouts.process(runtime, admin, payout_id)
    await analyze_queue(runtime)
    seconds = await timed(lambda: run_until_idle(runtime, concurrency=CONCURRENCY))
    statuses = {await status_of(runtime, i) for i in ids}
    assert statuses == {PayoutStatus.COMPLETED}, statuses
    return n / seconds


async def payout_latencies(
    runtime: Runtime, admin: User, worker: User, method: PaymentMethod
) -> list[float]:
    """Time from `process` (the admin's request, committed with its job) until the payout
    is `completed`, one at a time, with a worker running."""
    from handwork_payments.payouts import service as payouts

    ids = await requested(runtime, worker, method, LATENCY_SAMPLES)
    samples = []
    async with running_worker(runtime, concurrency=CONCURRENCY, name="bench"):
        for payout_id in ids:
            started = time.perf_counter()
            await payouts.process(runtime, admin, payout_id)

            async def completed(payout_id: int = payout_id) -> bool:
                return await status_of(runtime, payout_id) == PayoutStatus.COMPLETED

            await wait_for(completed)
            samples.append(time.perf_counter() - started)
    return samples


# --- the simplest real job: a marketplace event delivered -----------------------------------


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """bench.receiver in its own process; yields its URL, stops it after."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def delivery_throughput(url: str, hook: str, n: int) -> float:
    """`n` events written to the outbox (each with its delivery job, as a state change
    writes them), then one worker process's loop delivers them all to `hook`."""
    runtime = Runtime.build(
        settings_for(url, marketplace_webhook_url=hook, marketplace_webhook_secret="s" * 32), url
    )
    try:
        async with runtime.sessions() as session:
            before = await session.scalar(select(func.coalesce(func.max(MarketplaceEvent.id), 0)))
        for i in range(n):
            async with transaction(runtime.sessions) as session:
                await emit(session, "balance.available", {"worker_id": 1, "n": i})
        await analyze_queue(runtime)
        seconds = await timed(lambda: run_until_idle(runtime, concurrency=CONCURRENCY))
        async with runtime.sessions() as session:
            pending = await session.scalar(
                select(func.count()).where(
                    MarketplaceEvent.id > before, MarketplaceEvent.status != EventStatus.DELIVERED
                )
            )
        assert pending == 0, f"{pending} events not delivered"
        return n / seconds
    finally:
        await runtime.aclose()


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(samples) * 1000:7.1f} ms, p95 {p95 * 1000:7.1f} ms"


async def main() -> None:
    with fresh_database() as url:
        migrate.upgrade(url)
        runtime = Runtime.build(settings_for(url), url)
        try:
            client, worker, admin = await users(runtime)
            # Enough earnings for every payout below (1.00 each).
            await earnings(runtime, client, worker, (JOBS + 3 * LATENCY_SAMPLES) * 110)
            # The jobs the setup left, and the worker's code loaded once (about 0.3 s the
            # first time), before anything is timed.
            await run_until_idle(runtime, concurrency=CONCURRENCY)

            app = bare_app(url)
            noop_rate = await noop_throughput(app, runtime, JOBS)
            payout_rate = await payout_throughput(runtime, admin, worker, JOBS)
            with receiver() as hook:
                delivery_rate = await delivery_throughput(url, hook, JOBS)
            noop_lat = await noop_latencies(app, runtime)
            stripe_lat = await payout_latencies(runtime, admin, worker, PaymentMethod.STRIPE)
            paypal_lat = await payout_latencies(runtime, admin, worker, PaymentMethod.PAYPAL)
            async with runtime.sessions() as session:
                problems = await verify(session)

            base = statistics.median(noop_lat)
            print(f"one worker process, concurrency {CONCURRENCY}, {JOBS} jobs")
            print(f"  baseline, procrastinate no-op job: {noop_rate:8.1f} jobs/s")
            print(
                f"  send_payout (Stripe simulator):    {payout_rate:8.1f} jobs/s "
                f"(ratio to baseline {payout_rate / noop_rate:.2f})"
            )
            print(
                f"  deliver_event (receiver process):  {delivery_rate:8.1f} jobs/s "
                f"(ratio to baseline {delivery_rate / noop_rate:.2f}; target 200)"
            )
            print(f"time to done, {LATENCY_SAMPLES} one at a time, a worker running")
            print(f"  baseline, defer -> no-op job done: {ms(noop_lat)}")
            print(
                f"  Stripe payout process -> completed: {ms(stripe_lat)} "
                f"(ratio to baseline {statistics.median(stripe_lat) / base:.2f})"
            )
            print(
                f"  PayPal payout process -> completed: {ms(paypal_lat)} "
                f"(ratio to baseline {statistics.median(paypal_lat) / base:.2f}; batch job)"
            )
            print(f"  ledger invariants after the run: {problems or 'all hold'}")
        finally:
            await runtime.aclose()


if __name__ == "__main__":
    asyncio.run(main())
