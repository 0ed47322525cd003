from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from handwork_payments.http.deps import RuntimeDep
from handwork_payments.kit.errors import BadRequest, error_responses
from handwork_payments.webhooks import service

router = APIRouter(prefix="/payments/webhooks", tags=["webhooks"])

MAX_BODY_BYTES = 1_000_000  # Stripe's and PayPal's events are a few kB


class Received(BaseModel):
    received: bool
    duplicate: bool


async def _receive(provider: str, request: Request, runtime: RuntimeDep) -> Received:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest("Webhook body too large")
    _, new = await service.receive(runtime, provider, dict(request.headers), body)
    return Received(received=True, duplicate=not new)


@router.post("/stripe", response_model=Received, responses=error_responses(BadRequest))
async def stripe_webhook(request: Request, runtime: RuntimeDep) -> Received:
    """Authenticated by `Stripe-Signature`, not a bearer token."""
    return await _receive("stripe", request, runtime)


@router.post("/paypal", response_model=Received, responses=error_responses(BadRequest))
async def paypal_webhook(request: Request, runtime: RuntimeDep) -> Received:
    """Authenticated by PayPal's transmission headers, not a bearer token."""
    return await _receive("paypal", request, runtime)
