"""Driving the API as its users would, for tests that need a few steps to set up."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from handwork_payments.auth.service import ensure_admin
from handwork_payments.runtime import Runtime

_serial = itertools.count(1)
PASSWORD = "correct horse battery"


@dataclass
class Party:
    id: int
    email: str
    headers: dict[str, str]


class Api:
    def __init__(self, client: httpx.AsyncClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime

    async def login(self, email: str) -> dict[str, str]:
        r = await self.client.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def user(self, role: str) -> Party:
        email = f"{role}{next(_serial)}@example.com"
        r = await self.client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "full_name": role.title(), "role": role},
        )
        assert r.status_code == 201, r.text
        return Party(r.json()["id"], email, await self.login(email))

    async def admin(self) -> Party:
        email = f"admin{next(_serial)}@example.com"
        await ensure_admin(self.runtime, email=email, password=PASSWORD, full_name="Admin")
        headers = await self.login(email)
        me = await self.client.get("/api/v1/auth/me", headers=headers)
        return Party(me.json()["id"], email, headers)

    async def booking(
        self, client: Party, worker: Party, amount: str = "150.00", currency: str = "USD"
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/bookings",
            json={
                "worker_id": worker.id,
                "title": "Fix the sink",
                "amount": amount,
                "currency": currency,
            },
            headers=client.headers,
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def stripe_payment(
        self, client: Party, booking: dict[str, Any], payment_method: str | None = "pm_card_visa"
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "booking_id": booking["id"],
            "amount": booking["amount"],
            "currency": booking["currency"],
        }
        if payment_method:
            body["payment_method"] = payment_method
        return await self.client.post(
            "/api/v1/payments/stripe/payment-intent", json=body, headers=client.headers
        )

    async def held_payment(
        self, amount: str = "150.00", currency: str = "USD"
    ) -> tuple[Party, Party, dict[str, Any]]:
        """A client, a worker and a held Stripe payment between them."""
        client, worker = await self.user("client"), await self.user("worker")
        booking = await self.booking(client, worker, amount, currency)
        r = await self.stripe_payment(client, booking)
        assert r.status_code == 201, r.text
        payment = r.json()
        assert payment["status"] == "held", payment
        return client, worker, payment

    async def get(self, path: str, party: Party, **params: Any) -> Any:
        r = await self.client.get(f"/api/v1{path}", headers=party.headers, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, path: str, party: Party | None, json: Any = None) -> httpx.Response:
        headers = party.headers if party else {}
        return await self.client.post(f"/api/v1{path}", json=json, headers=headers)

    async def earnings(self, worker: Party, currency: str = "USD") -> dict[str, Any]:
        result: dict[str, Any] = await self.get(
            "/payments/earnings/worker", worker, currency=currency
        )
        return result


async def eventually(check: Any, timeout_seconds: float = 15.0) -> Any:
    """Poll an async check until it returns something truthy (background jobs)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_seconds
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_seconds}s: {result!r}")
        await asyncio.sleep(0.05)
