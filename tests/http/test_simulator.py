"""The simulators' browser-side endpoints: Stripe.js confirming a card or finishing 3-D
Secure (each followed by the event Stripe would send), PayPal's approval page, and what
they answer to ids that cannot be a simulator's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from handwork_payments.http import simulator
from handwork_payments.kit.errors import DomainError
from handwork_payments.models import SimulatedObject
from handwork_payments.providers.base import EventKind, HoldState, NewHold, ProviderHold
from handwork_payments.providers.simulated import (
    SimulatedPayPal,
    SimulatedProvider,
    SimulatedStripe,
)
from handwork_payments.runtime import Runtime
from tests.helpers import Api


@pytest.fixture
def stripe_sim(runtime: Runtime) -> SimulatedStripe:
    provider = runtime.providers.stripe
    assert isinstance(provider, SimulatedStripe)
    return provider


@pytest.fixture
def paypal_sim(runtime: Runtime) -> SimulatedPayPal:
    provider = runtime.providers.paypal
    assert isinstance(provider, SimulatedPayPal)
    return provider


async def create(sim: SimulatedProvider, payment_id: int = 1) -> ProviderHold:
    return await sim.create_hold(
        NewHold(
            payment_id=payment_id,
            booking_id=100 + payment_id,
            amount=15_000,
            currency="USD",
            return_url="https://example.com/return",
            cancel_url="https://example.com/cancel",
        ),
        idempotency_key=f"payment-{payment_id}-hold",
    )


async def simulated_rows(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(SimulatedObject)) or 0)


Delivered = list[tuple[str, dict[str, str], bytes]]
SimulatorHttp = tuple[httpx.AsyncClient, Delivered]


@pytest.fixture
async def simulator_http(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SimulatorHttp]:
    """The simulator router on a bare app, with the webhook inbox replaced by a recorder:
    these tests are about what the endpoints deliver, not how the inbox stores it."""
    delivered: Delivered = []

    async def receive(
        _runtime: Runtime, provider: str, headers: dict[str, str], body: bytes
    ) -> None:
        delivered.append((provider, headers, body))

    monkeypatch.setattr(simulator, "receive", receive)
    app = FastAPI()
    app.state.runtime = runtime

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    app.include_router(simulator.router, prefix="/api/v1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http, delivered


async def test_confirm_endpoint_delivers_the_stripe_event(
    stripe_sim: SimulatedStripe, simulator_http: SimulatorHttp
) -> None:
    http, delivered = simulator_http
    hold = await create(stripe_sim)
    url = f"/api/v1/simulator/stripe/payment_intents/{hold.provider_payment_id}"
    r = await http.post(f"{url}/confirm", json={"payment_method": "pm_card_visa"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "requires_capture"
    assert len(delivered) == 1
    provider, headers, body = delivered[0]
    event = await stripe_sim.parse_event(headers, body)
    assert provider == "stripe"
    assert event.kind is EventKind.HOLD_AUTHORIZED and event.amount == 15_000

    r = await http.post(f"{url}/confirm", json={"payment_method": "pm_card_visa"})
    assert r.status_code == 409
    r = await http.post(
        "/api/v1/simulator/stripe/payment_intents/pi_nope/confirm",
        json={"payment_method": "pm_card_visa"},
    )
    assert r.status_code == 404 and "detail" in r.json()


async def test_decline_and_three_d_secure_over_http(
    stripe_sim: SimulatedStripe, simulator_http: SimulatorHttp
) -> None:
    http, delivered = simulator_http
    declined = await create(stripe_sim, 1)
    r = await http.post(
        f"/api/v1/simulator/stripe/payment_intents/{declined.provider_payment_id}/confirm",
        json={"payment_method": "pm_card_chargeDeclined"},
    )
    assert r.status_code == 200 and r.json()["last_payment_error"]["code"] == "card_declined"
    event = await stripe_sim.parse_event(delivered[-1][1], delivered[-1][2])
    assert event.kind is EventKind.HOLD_FAILED
    assert event.failure_message == "Your card was declined."

    secure = await create(stripe_sim, 2)
    url = f"/api/v1/simulator/stripe/payment_intents/{secure.provider_payment_id}"
    r = await http.post(f"{url}/confirm", json={"payment_method": "pm_card_authenticationRequired"})
    assert r.status_code == 200 and r.json()["status"] == "requires_action"
    assert len(delivered) == 1  # nothing for requires_action
    r = await http.post(f"{url}/authenticate", json={"succeed": True})
    assert r.status_code == 200 and r.json()["status"] == "requires_capture"
    event = await stripe_sim.parse_event(delivered[-1][1], delivered[-1][2])
    assert event.kind is EventKind.HOLD_AUTHORIZED

    r = await http.post(
        f"/api/v1/simulator/stripe/payment_intents/{declined.provider_payment_id}/confirm",
        json={"payment_method": "pm_card_bogus"},
    )
    assert r.status_code == 400


async def test_paypal_checkout_endpoint_approves(
    paypal_sim: SimulatedPayPal, simulator_http: SimulatorHttp
) -> None:
    http, _ = simulator_http
    hold = await create(paypal_sim)
    assert hold.approval_url is not None
    r = await http.get(hold.approval_url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["order_id"] == hold.provider_payment_id
    held = await paypal_sim.confirm_hold(
        provider_payment_id=hold.provider_payment_id,
        payer_id=body["payer_id"],
        idempotency_key="payment-1-confirm",
    )
    assert held.state is HoldState.AUTHORIZED
    r = await http.get("/api/v1/simulator/paypal/checkoutnow", params={"token": "NOSUCHORDER"})
    assert r.status_code == 404


# --- ids that cannot be a simulator's: 422 with a detail, never a database error ----------

NUL = "pi_\x00abc"
TOO_LONG = "pi_" + "a" * 62


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/stripe/payment_intents/{id}", None),
        ("POST", "/stripe/payment_intents/{id}/confirm", {"payment_method": "pm_card_visa"}),
        ("POST", "/stripe/payment_intents/{id}/authenticate", {"succeed": True}),
    ],
)
@pytest.mark.parametrize("intent_id", [NUL, TOO_LONG, "pi_x;drop"])
async def test_malformed_intent_ids_are_refused(
    api: Api,
    runtime: Runtime,
    method: str,
    path: str,
    body: dict[str, object] | None,
    intent_id: str,
) -> None:
    before = await simulated_rows(runtime)
    url = "/api/v1/simulator" + path.format(id=quote(intent_id, safe=""))
    r = await api.client.request(method, url, json=body)
    assert r.status_code == 422, r.text
    assert "intent_id" in r.json()["detail"]
    assert await simulated_rows(runtime) == before


@pytest.mark.parametrize("token", ["ORDER\x00ID", "A" * 65, "ORDER ID"])
async def test_malformed_paypal_tokens_are_refused(api: Api, runtime: Runtime, token: str) -> None:
    before = await simulated_rows(runtime)
    r = await api.client.get("/api/v1/simulator/paypal/checkoutnow", params={"token": token})
    assert r.status_code == 422, r.text
    assert "token" in r.json()["detail"]
    assert await simulated_rows(runtime) == before


async def test_longest_well_formed_id_is_simply_unknown(api: Api) -> None:
    longest = "pi_" + "a" * 61
    r = await api.client.get(f"/api/v1/simulator/stripe/payment_intents/{longest}")
    assert r.status_code == 404
    assert r.json()["detail"] == f"No such payment_intent: '{longest}'"
    r = await api.client.get("/api/v1/simulator/paypal/checkoutnow", params={"token": "A" * 64})
    assert r.status_code == 404
    assert r.json()["detail"] == f"The specified resource ({'A' * 64}) does not exist."
