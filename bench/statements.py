"""Round trips to the database per endpoint: ours, and the simulated provider's own
(a real provider costs none of those). The statement budgets' tests assert them
(tests/http/test_statement_budget.py) and the bench prints them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from bench.parties import API, Party, booking, held_payment, hold, parties, release
from handwork_payments.db import counting_statements


@dataclass(frozen=True)
class Row:
    endpoint: str
    ours: int
    provider: int


async def counted(name: str, call: Callable[[], Awaitable[httpx.Response]]) -> Row:
    with counting_statements() as count:
        r = await call()
    assert r.status_code < 300, (name, r.status_code, r.text)
    return Row(name, count.ours, count.provider)


async def statement_table(http: httpx.AsyncClient) -> list[Row]:
    """Each measured endpoint once, on objects prepared beforehand (so a first use of an
    account or a cache is not what is counted, but a steady request)."""
    client, worker = await parties(http, "statements")
    # Warm: the accounts and caches a steady server has.
    await held_payment(http, client, worker, "10.00")
    paid = await held_payment(http, client, worker, "10.00")
    await release(http, client, paid)
    to_refund = await held_payment(http, client, worker, "10.00")
    booking_id = await booking(http, client, worker, "10.00")
    to_release = await held_payment(http, client, worker, "10.00")

    def post(path: str, who: Party, body: object = None) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.post(f"{API}{path}", json=body, headers=who.headers)

    def get(path: str, who: Party) -> Callable[[], Awaitable[httpx.Response]]:
        return lambda: http.get(f"{API}{path}", headers=who.headers)

    rows = [
        await counted(
            "POST /bookings",
            post("/bookings", client, {"worker_id": worker.id, "title": "b", "amount": "10.00"}),
        ),
        await counted(
            "POST /payments/stripe/payment-intent (card hold)",
            lambda: _hold_response(http, client, booking_id),
        ),
        await counted(
            "POST /payments/{id}/release", post(f"/payments/{to_release}/release", client)
        ),
        await counted(
            "POST /payments/refund (full)",
            post("/payments/refund", worker, {"payment_id": to_refund, "reason": "bench"}),
        ),
        await counted(
            "POST /payments/payouts/request",
            post(
                "/payments/payouts/request", worker, {"amount": "1.00", "payment_method": "paypal"}
            ),
        ),
        await counted("GET /auth/me (user resolution)", get("/auth/me", client)),
        await counted("GET /payments/earnings/worker", get("/payments/earnings/worker", worker)),
        await counted("GET /payments/summary/client", get("/payments/summary/client", client)),
        await counted("GET /payments/", get("/payments/", client)),
        await counted("GET /payments/transactions", get("/payments/transactions", worker)),
        await counted("GET /payments/{id}", get(f"/payments/{paid}", client)),
    ]
    return rows


async def _hold_response(http: httpx.AsyncClient, client: Party, booking_id: int) -> httpx.Response:
    return await http.post(
        f"{API}/payments/stripe/payment-intent",
        json={
            "booking_id": booking_id,
            "amount": "10.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
        },
        headers=client.headers,
    )


def render(rows: list[Row]) -> str:
    width = max(len(r.endpoint) for r in rows)
    lines = [f"  {'endpoint':<{width}}  ours  simulator"]
    lines += [f"  {r.endpoint:<{width}}  {r.ours:>4}  {r.provider:>9}" for r in rows]
    return "\n".join(lines)


__all__ = ["Row", "hold", "render", "statement_table"]
