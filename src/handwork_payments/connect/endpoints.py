from __future__ import annotations

from fastapi import APIRouter

from handwork_payments.connect import service
from handwork_payments.connect.schemas import OnboardingOut
from handwork_payments.http.deps import RuntimeDep, WorkerUser
from handwork_payments.http.responses import PROVIDER_SETUP
from handwork_payments.models import PaymentMethod

router = APIRouter(prefix="/payments/stripe/connect", tags=["payouts"])


@router.post("/onboarding", response_model=OnboardingOut, responses=PROVIDER_SETUP)
async def stripe_connect_onboarding(worker: WorkerUser, runtime: RuntimeDep) -> OnboardingOut:
    """The worker's Stripe Express account (created when missing) and a link to Stripe's
    onboarding. Payouts to it need Stripe to enable them (`account.updated`)."""
    runtime.providers.ensure_offered(PaymentMethod.STRIPE)
    account_id, url = await service.onboarding_link(runtime, worker)
    return OnboardingOut(account_id=account_id, url=url)
