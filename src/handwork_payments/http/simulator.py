"""What the buyer's browser does at the provider, over HTTP, for the built-in simulators:
Stripe.js confirming a card or finishing 3-D Secure, and PayPal's approval pages (an
order's, and saving PayPal for a recurring schedule); and what the payer's bank does: a
chargeback opened on a Stripe payment, and its decision.

No bearer token: at a real provider these are the payer's own actions. Mounted only while
a provider is simulated. A Stripe action is followed by the event Stripe would send,
delivered to our own webhook inbox exactly as a real delivery (signed, verified, stored,
processed by the worker): that is how a payment confirmed in the browser reaches us.
Calling the inbox is why this module sits in http/, above the domains, and not in providers/.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from handwork_payments.http.deps import RuntimeDep
from handwork_payments.kit.errors import (
    BadRequest,
    Conflict,
    DomainError,
    NotFound,
    UnparsableBody,
    error_responses,
)
from handwork_payments.providers.base import HoldState, PaymentDeclinedError, ProviderError
from handwork_payments.providers.simulated import (
    SimulatedPayPal,
    SimulatedStripe,
    UnknownObjectError,
)
from handwork_payments.providers.simulated.store import SETUP_INTENT
from handwork_payments.providers.simulated.stripe_objects import DISPUTE_REASONS
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks.service import receive

router = APIRouter(prefix="/simulator", tags=["simulator"])

T = TypeVar("T")

# What a simulator's id can be (they are stored in a VARCHAR(64)): anything else, a NUL
# byte above all, is refused here with a 422 rather than failing in PostgreSQL.
_ID_PATTERN = r"^[A-Za-z0-9_\-]+$"
_ID_MAX_LENGTH = 64
IntentId = Annotated[str, Path(min_length=1, max_length=_ID_MAX_LENGTH, pattern=_ID_PATTERN)]
OrderToken = Annotated[str, Query(min_length=1, max_length=_ID_MAX_LENGTH, pattern=_ID_PATTERN)]


class ConfirmRequest(BaseModel):
    payment_method: str = Field(
        min_length=1,
        max_length=100,
        description="pm_card_visa | pm_card_chargeDeclined | pm_card_authenticationRequired | "
        "pm_card_visa_apple_pay | pm_card_visa_google_pay | pm_card_link | "
        "pm_card_{apple_pay,google_pay,link}_chargeDeclined | pm_crypto_usdc (stablecoin) | "
        "pm_card_chargeCustomerFail (SetupIntents)",
    )


class AuthenticateRequest(BaseModel):
    succeed: bool = True


class DisputeRequest(BaseModel):
    reason: Literal[DISPUTE_REASONS] = Field(  # type: ignore[valid-type]
        default="fraudulent", description="Stripe's dispute reason"
    )


class DisputeDecision(BaseModel):
    outcome: Literal["won", "lost"]


class ApprovalResponse(BaseModel):
    order_id: str
    payer_id: str


class SetupApprovalResponse(BaseModel):
    setup_token_id: str
    payer_id: str


def _stripe(runtime: Runtime) -> SimulatedStripe:
    provider = runtime.providers.stripe
    if not isinstance(provider, SimulatedStripe):
        raise NotFound("The stripe simulator is not in use: real stripe credentials are set")
    return provider


def _paypal(runtime: Runtime) -> SimulatedPayPal:
    provider = runtime.providers.paypal
    if not isinstance(provider, SimulatedPayPal):
        raise NotFound("The paypal simulator is not in use: real paypal credentials are set")
    return provider


def _domain_error(exc: ProviderError) -> DomainError:
    if isinstance(exc, UnknownObjectError):
        return NotFound(exc.message)
    if exc.code == "resource_missing":  # an unknown payment method: bad input
        return BadRequest(exc.message)
    return Conflict(exc.message)


async def _answer(call: Awaitable[T]) -> T:
    """The simulator's answer, its refusal in HTTP terms."""
    try:
        return await call
    except ProviderError as exc:
        raise _domain_error(exc) from exc


async def _deliver(
    runtime: Runtime, simulator: SimulatedStripe, event_type: str, obj: dict[str, Any]
) -> None:
    body, headers = simulator.stripe_event(event_type, obj)
    await receive(runtime, "stripe", headers, body)


@router.get(
    "/stripe/payment_intents/{intent_id}",
    responses=error_responses(NotFound),
    summary="Retrieve a simulated PaymentIntent (Stripe.js retrievePaymentIntent)",
)
async def get_intent(intent_id: IntentId, runtime: RuntimeDep) -> dict[str, Any]:
    simulator = _stripe(runtime)
    return await _answer(simulator.intent_object(intent_id))


@router.post(
    "/stripe/payment_intents/{intent_id}/confirm",
    responses=error_responses(BadRequest, NotFound, Conflict),
    summary="Confirm a PaymentIntent with a test card, as Stripe.js does",
)
async def confirm_intent(
    intent_id: IntentId, body: ConfirmRequest, runtime: RuntimeDep
) -> dict[str, Any]:
    """Answers the intent as it now is; an authorisation is followed by
    `payment_intent.amount_capturable_updated`, a stablecoin payment (captured at once) by
    `payment_intent.succeeded`, a decline by `payment_intent.payment_failed` (the intent
    shows `last_payment_error`), 3-D Secure by nothing until it is done."""
    simulator = _stripe(runtime)
    event_type: str | None = None
    try:
        hold = await simulator.client_confirm(intent_id, body.payment_method)
    except PaymentDeclinedError:
        event_type = "payment_intent.payment_failed"
    except ProviderError as exc:
        raise _domain_error(exc) from exc
    else:
        if hold.state is HoldState.AUTHORIZED:
            event_type = "payment_intent.amount_capturable_updated"
        elif hold.state is HoldState.CAPTURED:
            event_type = "payment_intent.succeeded"
    intent = await simulator.intent_object(intent_id)
    if event_type is not None:
        await _deliver(runtime, simulator, event_type, intent)
    return intent


@router.post(
    "/stripe/setup_intents/{setup_id}/confirm",
    responses=error_responses(BadRequest, NotFound, Conflict),
    summary="Confirm a SetupIntent with a test card, as Stripe.js confirmSetup does",
)
async def confirm_setup(
    setup_id: IntentId, body: ConfirmRequest, runtime: RuntimeDep
) -> dict[str, Any]:
    """`pm_card_visa`, `pm_card_chargeCustomerFail` (saved; every later charge declined) or
    `pm_card_authenticationRequired` (saved; every off-session charge declined with
    `authentication_required`) saves the card on the setup's customer, followed by
    `setup_intent.succeeded`;
    `pm_card_chargeDeclined` is declined (`setup_intent.setup_failed`)."""
    simulator = _stripe(runtime)
    event_type = "setup_intent.succeeded"
    try:
        await simulator.client_confirm_setup(setup_id, body.payment_method)
    except PaymentDeclinedError:
        event_type = "setup_intent.setup_failed"
    except ProviderError as exc:
        raise _domain_error(exc) from exc
    setup = await simulator.object_of(setup_id, SETUP_INTENT)
    await _deliver(runtime, simulator, event_type, setup)
    return setup


@router.post(
    "/stripe/payment_intents/{intent_id}/authenticate",
    responses=error_responses(UnparsableBody, NotFound, Conflict),
    summary="Complete (or fail) 3-D Secure for a PaymentIntent",
)
async def authenticate_intent(
    intent_id: IntentId, runtime: RuntimeDep, body: AuthenticateRequest | None = None
) -> dict[str, Any]:
    simulator = _stripe(runtime)
    succeed = body.succeed if body is not None else True
    hold = await _answer(simulator.authenticate(intent_id, succeed))
    intent = await simulator.intent_object(intent_id)
    if hold.state is HoldState.AUTHORIZED:
        await _deliver(runtime, simulator, "payment_intent.amount_capturable_updated", intent)
    elif hold.state is HoldState.FAILED:
        await _deliver(runtime, simulator, "payment_intent.payment_failed", intent)
    return intent


@router.post(
    "/stripe/payment_intents/{intent_id}/dispute",
    responses=error_responses(UnparsableBody, NotFound, Conflict),
    summary="The payer's bank disputes the intent's captured charge (a chargeback)",
)
async def dispute_intent(
    intent_id: IntentId, runtime: RuntimeDep, body: DisputeRequest | None = None
) -> dict[str, Any]:
    """Answers the dispute as Stripe holds it (`needs_response`), after delivering
    `charge.dispute.created` to our webhook inbox. Refused (409) for an intent with no
    captured charge or a charge disputed already."""
    simulator = _stripe(runtime)
    reason = body.reason if body is not None else "fraudulent"
    dispute = await _answer(simulator.open_dispute(intent_id, reason=reason))
    await _deliver(runtime, simulator, "charge.dispute.created", dispute)
    return dispute


@router.post(
    "/stripe/disputes/{dispute_id}/close",
    responses=error_responses(UnparsableBody, NotFound, Conflict),
    summary="The card network decides a chargeback: won (the money comes back) or lost",
)
async def close_dispute(
    dispute_id: IntentId, body: DisputeDecision, runtime: RuntimeDep
) -> dict[str, Any]:
    """Followed by `charge.dispute.closed`; a lost chargeback is taken back as the
    webhook handler does it for real Stripe."""
    simulator = _stripe(runtime)
    dispute = await _answer(simulator.close_dispute(dispute_id, won=body.outcome == "won"))
    await _deliver(runtime, simulator, "charge.dispute.closed", dispute)
    return dispute


@router.get(
    "/paypal/checkoutnow",
    responses=error_responses(NotFound, Conflict),
    summary="The PayPal buyer approves an order (the order's approval_url)",
)
async def approve_order(runtime: RuntimeDep, token: OrderToken) -> ApprovalResponse:
    simulator = _paypal(runtime)
    payer_id = await _answer(simulator.approve(token))
    return ApprovalResponse(order_id=token, payer_id=payer_id)


@router.get(
    "/paypal/agreements/approve",
    responses=error_responses(NotFound),
    summary="The PayPal payer approves saving PayPal (a setup token's approval_url)",
)
async def approve_setup_token(
    runtime: RuntimeDep,
    approval_session_id: OrderToken,
    declines: Annotated[bool, Query(description="every later charge is declined")] = False,
) -> SetupApprovalResponse:
    """The payer comes back to PAYPAL_VAULT_RETURN_URL; reading the schedule then saves
    the payment token and activates it. `declines=true`: a payer whose every later
    (off-session) charge PayPal declines."""
    simulator = _paypal(runtime)
    payer_id = await _answer(simulator.approve_setup(approval_session_id, declines=declines))
    return SetupApprovalResponse(setup_token_id=approval_session_id, payer_id=payer_id)
