from __future__ import annotations

from pydantic import BaseModel, Field


class OnboardingOut(BaseModel):
    account_id: str = Field(description="The worker's Stripe connected account (acct_...)")
    url: str = Field(
        description="Stripe's hosted onboarding (an Account Link): single use, expires in "
        "minutes; send the worker there at once"
    )
