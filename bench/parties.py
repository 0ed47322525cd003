"""The parties and objects a benchmark acts on, made over HTTP like any caller would:
a client, a worker with a PayPal payout method, bookings, held and released payments."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

PASSWORD = "bench-pass-1"
API = "/api/v1"


@dataclass(frozen=True)
class Party:
    id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register(http: httpx.AsyncClient, role: str, email: str) -> Party:
    r = await http.post(
        f"{API}/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": role, "role": role},
    )
    assert r.status_code == 201, r.text
    token = await http.post(f"{API}/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return Party(r.json()["id"], token.json()["access_token"])


async def parties(http: httpx.AsyncClient, tag: str) -> tuple[Party, Party]:
    """A client and a worker who can be paid out through PayPal."""
    client = await register(http, "client", f"client-{tag}@bench.example")
    worker = await register(http, "worker", f"worker-{tag}@bench.example")
    r = await http.put(
        f"{API}/payments/payout-methods",
        json={"paypal_email": f"worker-{tag}@example.com"},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    return client, worker


async def booking(http: httpx.AsyncClient, client: Party, worker: Party, amount: str) -> int:
    r = await http.post(
        f"{API}/bookings",
        json={"worker_id": worker.id, "title": "bench", "amount": amount},
        headers=client.headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def hold(http: httpx.AsyncClient, client: Party, booking_id: int, amount: str) -> int:
    r = await http.post(
        f"{API}/payments/stripe/payment-intent",
        json={
            "booking_id": booking_id,
            "amount": amount,
            "currency": "USD",
            "payment_method": "pm_card_visa",
        },
        headers=client.headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def release(http: httpx.AsyncClient, client: Party, payment_id: int) -> None:
    r = await http.post(f"{API}/payments/{payment_id}/release", headers=client.headers)
    assert r.status_code == 200, r.text


async def held_payment(http: httpx.AsyncClient, client: Party, worker: Party, amount: str) -> int:
    return await hold(http, client, await booking(http, client, worker, amount), amount)


async def released_payment(
    http: httpx.AsyncClient, client: Party, worker: Party, amount: str
) -> int:
    payment_id = await held_payment(http, client, worker, amount)
    await release(http, client, payment_id)
    return payment_id
