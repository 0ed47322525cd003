"""Parties registered from chosen addresses, and RISK_MODE set for one test."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from handwork_payments.app import create_app
from handwork_payments.models import Payment, RiskReview
from handwork_payments.runtime import Runtime
from tests.helpers import PASSWORD, Api, Party

_serial = itertools.count(1)


@asynccontextmanager
async def risk_settings(runtime: Runtime, **values: Any) -> AsyncIterator[None]:
    """The session's settings changed for one test, restored after it."""
    before = {name: getattr(runtime.settings, name) for name in values}
    for name, value in values.items():
        setattr(runtime.settings, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(runtime.settings, name, value)


async def party(api: Api, role: str, ip: str, email: str | None = None) -> Party:
    """A user registered and logged in from `ip` (every test client is 127.0.0.1
    otherwise, which would tie every account to every other)."""
    email = email or f"risk-{role}{next(_serial)}@example.com"
    transport = httpx.ASGITransport(app=create_app(api.runtime), client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        r = await http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "full_name": "Risky", "role": role},
        )
        assert r.status_code == 201, r.text
        r = await http.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return Party((await api.get("/auth/me", Party(0, email, headers)))["id"], email, headers)


async def pay(api: Api, client: Party, worker: Party, amount: str = "150.00", **kw: Any) -> Any:
    booking = await api.booking(client, worker, amount)
    return await api.stripe_payment(client, booking, **kw)


async def reviews_of(runtime: Runtime, object_type: str, object_id: int) -> list[RiskReview]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(RiskReview)
            .where(RiskReview.object_type == object_type, RiskReview.object_id == object_id)
            .order_by(RiskReview.id)
        )
        return list(rows)


async def payment_row(runtime: Runtime, payment_id: int) -> Payment:
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment
