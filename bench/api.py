"""Throughput of the money endpoints over real HTTP, against the cheapest endpoint as the
baseline measured in the same run.

A real server (uvicorn on 127.0.0.1, simulators, no in-process worker) on a fresh
database; CONCURRENCY clients. Measures requests per second of GET /health (baseline:
HTTP, routing, one `SELECT 1`), then of whole escrow flows (booking, card hold, release:
three POSTs each with its row locks, journal entries, audit rows and the simulator's own
transactions), and prints flows per second and the ratio of a flow's cost to a health
check's. Run with `python -m bench.api` (or `make bench`); BENCH_FLOWS sets the count."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import uvicorn

from handwork_payments import migrate
from handwork_payments.app import create_app
from handwork_payments.ledger.verify import verify
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from tests.database import fresh_database

FLOWS = int(os.environ.get("BENCH_FLOWS", "200"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))


async def rate(count: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Calls per second of `one` run `count` times by CONCURRENCY clients."""
    queue = iter(range(count))

    async def client() -> None:
        for i in queue:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


async def main() -> None:
    with fresh_database() as url:
        migrate.upgrade(url)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=url,
            jwt_secret="x" * 32,
            password_hash_time_cost=1,
            password_hash_memory_kib=1024,
            db_pool_size=CONCURRENCY,
        )
        runtime = Runtime.build(settings, url)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="error")
        )
        serving = asyncio.create_task(server.serve())
        try:
            for _ in range(500):  # uvicorn offers no start event; poll its flag
                if server.started:
                    break
                await asyncio.sleep(0.02)
            limits = httpx.Limits(max_connections=CONCURRENCY)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}/api/v1", limits=limits, timeout=60
            ) as http:
                parties: dict[str, Any] = {}
                for role in ("client", "worker"):
                    email = f"{role}@bench.example"
                    r = await http.post(
                        "/auth/register",
                        json={
                            "email": email,
                            "password": "bench-pass-1",
                            "full_name": role,
                            "role": role,
                        },
                    )
                    token = (
                        await http.post(
                            "/auth/token", data={"username": email, "password": "bench-pass-1"}
                        )
                    ).json()["access_token"]
                    parties[role] = (r.json()["id"], {"Authorization": f"Bearer {token}"})
                worker_id, _ = parties["worker"]
                _, client = parties["client"]

                async def health(_: int) -> None:
                    r = await http.get(f"http://127.0.0.1:{port}/health")
                    assert r.status_code == 200

                async def flow(_: int) -> None:
                    b = await http.post(
                        "/bookings",
                        json={"worker_id": worker_id, "title": "b", "amount": "10.00"},
                        headers=client,
                    )
                    p = await http.post(
                        "/payments/stripe/payment-intent",
                        json={
                            "booking_id": b.json()["id"],
                            "amount": "10.00",
                            "currency": "USD",
                            "payment_method": "pm_card_visa",
                        },
                        headers=client,
                    )
                    assert p.status_code == 201, p.text
                    r = await http.post(f"/payments/{p.json()['id']}/release", headers=client)
                    assert r.status_code == 200, r.text

                await rate(50, health)  # warm-up
                baseline = await rate(FLOWS * 3, health)
                flows = await rate(FLOWS, flow)
            async with runtime.sessions() as session:
                problems = await verify(session)
            print(f"{CONCURRENCY} concurrent clients, HTTP on 127.0.0.1, simulators")
            print(f"  GET /health (baseline): {baseline:8.1f} requests/s")
            print(f"  escrow flows (3 POSTs): {flows:8.1f} flows/s = {flows * 3:.1f} requests/s")
            print(f"  one flow costs {baseline / flows:.1f} health checks")
            print(f"  ledger invariants after {FLOWS} flows: {problems or 'all hold'}")
        finally:
            server.should_exit = True
            await serving
            await runtime.aclose()


if __name__ == "__main__":
    asyncio.run(main())
