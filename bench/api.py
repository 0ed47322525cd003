"""`make bench`'s HTTP part: the API as its own processes (`serve --workers N
--no-worker`), wrk in another, pgbench on the same PostgreSQL in the same run, and every
target of issue 11 as a ratio against its baseline.

Phases, each followed by `handwork-payments ledger verify`: for 1 and for CORES API
processes at CONNECTIONS connections, GET /health (the reads' baseline), the five reads,
escrow flows (booking, card hold, release), refund flows (booking, card hold, full
refund) and payout requests from one worker (a hot balance); then escrow flows against
1, 4, 16 and 64 connections (plotted), the same with a slow provider
(SIMULATOR_LATENCY_MS=300, 64 connections), the reads again after the ledger grew by
LEDGER_ROWS postings, and the statement table. Results and the PNG go to bench/results/.

Environment: BENCH_SECONDS (each wrk run, default 10), BENCH_CONNECTIONS (16),
BENCH_SWEEP ("1,4,16,64"), BENCH_LEDGER_ROWS (1000000), BENCH_SLOW_MS (300),
BENCH_RESULTS (bench/results)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from bench import baseline, load, report, servers
from bench.parties import API, Party, parties, released_payment
from bench.statements import render, statement_table
from handwork_payments import migrate
from tests.database import fresh_database

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
SWEEP = [int(c) for c in os.environ.get("BENCH_SWEEP", "1,4,16,64").split(",")]
LEDGER_ROWS = int(os.environ.get("BENCH_LEDGER_ROWS", "1000000"))
SLOW_MS = int(os.environ.get("BENCH_SLOW_MS", "300"))
SLOW_CONNECTIONS = int(os.environ.get("BENCH_SLOW_CONNECTIONS", "64"))
RESULTS = Path(os.environ.get("BENCH_RESULTS", Path(__file__).parent / "results"))
CORES = os.cpu_count() or 1
PROCESSES = [int(n) for n in os.environ.get("BENCH_PROCESSES", f"1,{CORES}").split(",")]
# Per process, and as many again on overflow: 2 x CORES x this stays under
# max_connections (100 by default) beside pgbench and the other clients.
POOL = int(os.environ.get("BENCH_DB_POOL_SIZE", "10"))

READS = ("earnings", "client summary", "payments list", "transactions", "payment by id")


class World:
    """Tokens and ids prepared over HTTP before any load: a client and a worker per
    connection, a hot worker with money to pay out, and a client and a worker whose reads
    are measured (no flow touches them: what they read is the same in every phase)."""

    def __init__(
        self, pairs: list[tuple[Party, Party]], hot: Party, readers: tuple[Party, Party], paid: int
    ) -> None:
        self.pairs = pairs
        self.hot = hot
        self.client, self.worker = readers
        self.paid = paid
        lines = ",\n".join(
            f'  {{client="{c.token}", worker="{w.token}", worker_id={w.id}}}' for c, w in pairs
        )
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.lua = RESULTS / "parties.lua"
        self.lua.write_text(f"return {{\n{lines}\n}}\n")

    def reads(self) -> dict[str, tuple[str, Party]]:
        return {
            "earnings": ("/payments/earnings/worker", self.worker),
            "client summary": ("/payments/summary/client", self.client),
            "payments list": ("/payments/", self.client),
            "transactions": ("/payments/transactions", self.worker),
            "payment by id": (f"/payments/{self.paid}", self.client),
        }


async def prepare(base: str, count: int) -> World:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        pairs = [await parties(http, f"p{i}") for i in range(count)]
        hot_client, hot = await parties(http, "hot")
        # 950.00 available: payout requests of 0.01 never run it dry during the bench.
        await released_payment(http, hot_client, hot, "1000.00")
        client, worker = await parties(http, "reader")
        paid = await released_payment(http, client, worker, "10.00")
    return World(pairs, hot, (client, worker), paid)


def flows(base: str, world: World, flow: str, connections: int, seconds: float) -> load.Load:
    return load.run(
        base,
        load.script("flow.lua"),
        connections=connections,
        seconds=seconds,
        env={"BENCH_PARTIES": str(world.lua), "FLOW": flow},
        one_thread_per_connection=True,
    )


def payouts(base: str, world: World, connections: int, seconds: float) -> load.Load:
    return load.run(
        base,
        load.script("post.lua"),
        connections=connections,
        seconds=seconds,
        env={
            "BENCH_PATH": f"{API}/payments/payouts/request",
            "BENCH_BODY": '{"amount":"0.01","payment_method":"paypal"}',
            "BENCH_TOKEN": world.hot.token,
        },
    )


def reads(base: str, world: World, seconds: float) -> dict[str, load.Load]:
    measured = {
        "health": load.run(
            f"{base}/health", load.get_script(None), connections=CONNECTIONS, seconds=seconds
        )
    }
    for name, (path, who) in world.reads().items():
        measured[name] = load.run(
            f"{base}{API}{path}",
            load.get_script(who.token),
            connections=CONNECTIONS,
            seconds=seconds,
        )
    return measured


def one_server(
    env: dict[str, str], world: World | None, workers: int, log: Path, verdicts: list[str]
) -> tuple[World, dict[str, Any]]:
    """Every phase at CONNECTIONS against `workers` processes."""
    with servers.serving(env, workers, log) as (base, pid):
        if world is None:
            world = asyncio.run(prepare(base, max([*SWEEP, CONNECTIONS, SLOW_CONNECTIONS])))
        phases: dict[str, Any] = {}

        def verified(name: str, value: Any) -> None:
            phases[name] = value
            verdicts.append(f"{workers} proc, after {name}: {servers.ledger_verify(env)}")

        for name, measured in reads(base, world, SECONDS).items():
            verified(name, measured)
        verified("escrow flows", flows(base, world, "escrow", CONNECTIONS, SECONDS))
        verified("refund flows", flows(base, world, "refund", CONNECTIONS, SECONDS))
        verified("payout requests", payouts(base, world, CONNECTIONS, SECONDS))
        phases["rss_mb"] = max(servers.rss_mb(p) for p in servers.api_processes(pid))
        if workers == PROCESSES[-1]:
            phases["sweep"] = {}
            for connections in SWEEP:
                phases["sweep"][connections] = flows(base, world, "escrow", connections, SECONDS)
                verdicts.append(f"sweep {connections}: {servers.ledger_verify(env)}")
            # Read again just before the growth: the ratio compares reads of one database
            # moments apart, 10^6 postings between them, not the first phase's reads
            # against reads after every flow (a warmer, busier, bigger database).
            phases["before growth"] = reads(base, world, SECONDS)
            phases["grown"] = report.grow_ledger(env["DATABASE_URL"], LEDGER_ROWS)
            phases["large"] = reads(base, world, SECONDS)
            verdicts.append(f"reads at {phases['grown']:,} postings: {servers.ledger_verify(env)}")
    return world, phases


def main_sync() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with fresh_database() as url, fresh_database() as pg_url:
        migrate.upgrade(url)
        print(f"wrk: {load.wrk_binary()}; {CORES} cores; {SECONDS:g} s per run", flush=True)
        baseline.prepare(pg_url)
        bases = baseline.measure(pg_url, CONNECTIONS, SECONDS)
        print(f"pgbench: {bases}", flush=True)
        env = servers.environment(url, DB_POOL_SIZE=str(POOL))
        verdicts: list[str] = []
        world = None
        runs = {}
        for workers in PROCESSES:
            world, runs[workers] = one_server(
                env, world, workers, RESULTS / f"serve-{workers}.log", verdicts
            )
        single, multi = runs[PROCESSES[0]], runs[PROCESSES[-1]]
        slow_env = {**env, "SIMULATOR_LATENCY_MS": str(SLOW_MS)}
        assert world is not None
        with servers.serving(slow_env, PROCESSES[-1], RESULTS / "serve-slow.log") as (base, _):
            slow = flows(base, world, "escrow", SLOW_CONNECTIONS, max(SECONDS, 5))
        verdicts.append(f"slow provider: {servers.ledger_verify(env)}")
        rows = asyncio.run(_statements(url))
        verdicts.append(f"statement table: {servers.ledger_verify(env)}")
    text = report.render(
        bases, single, multi, slow, SLOW_MS, SLOW_CONNECTIONS, PROCESSES[-1], CONNECTIONS
    )
    text += "\n\nstatements per request (one of each, steady state)\n" + render(rows)
    text += "\n\nledger verify\n" + "\n".join(f"  {v}" for v in verdicts)
    text += f"\n\n(took {time.time() - started:.0f} s)"
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"api-{stamp}.txt").write_text(text + "\n")
    (RESULTS / "api-latest.json").write_text(
        json.dumps(
            {"single": single, "multi": multi, "slow": slow, "baselines": bases},
            default=_plain,
            indent=1,
        )
    )
    report.plot(multi["sweep"], bases, RESULTS / "api-connections.png")
    print(f"results: {RESULTS}/api-{stamp}.txt, plot: {RESULTS}/api-connections.png")


def _plain(value: Any) -> Any:
    return asdict(value) | ({"rate": value.rate} if hasattr(value, "rate") else {})


async def _statements(url: str) -> list[Any]:
    from handwork_payments.app import create_app
    from handwork_payments.runtime import Runtime
    from handwork_payments.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=url,
        jwt_secret="x" * 32,  # type: ignore[call-arg]
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        registrations_per_ip_per_hour=100_000,
    )
    runtime = Runtime.build(settings, url)
    try:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            return await statement_table(http)
    finally:
        await runtime.aclose()


async def main() -> None:
    # The phases run processes and wait for them: off the event loop __main__ started.
    await asyncio.to_thread(main_sync)


if __name__ == "__main__":
    main_sync()
