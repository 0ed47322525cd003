"""Where a worker's payouts go: a Stripe connected account, a PayPal email.

A Stripe account pays out to one worker at most (a unique index on
users.stripe_account_id): `account.updated` enables payouts for the worker naming the
account, so a second worker typing someone else's `acct_...` must be refused, not
enabled with it. With live Stripe an account is taken only from our own onboarding
(POST /payments/stripe/connect/onboarding, which creates it as a Connect account of
this platform and stores it on the worker): an id typed in could be any account."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from handwork_payments.accounts.audit import audit_user
from handwork_payments.db import transaction
from handwork_payments.kit.errors import BadRequest, Conflict
from handwork_payments.models import SignalKind, User
from handwork_payments.risk import signals
from handwork_payments.runtime import Runtime

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")


class StripeAccountTaken(Conflict):
    """The Stripe account is another worker's."""

    def __init__(self) -> None:
        super().__init__("This Stripe account is already another worker's payout method")


class StripeAccountNotOnboarded(BadRequest):
    """With live Stripe, only the account our onboarding created is accepted."""

    def __init__(self) -> None:
        super().__init__(
            "With live Stripe a payout account comes from onboarding: "
            "POST /payments/stripe/connect/onboarding"
        )


async def set_methods(
    runtime: Runtime, worker: User, *, stripe_account_id: str | None, paypal_email: str | None
) -> User:
    if stripe_account_id is not None and not STRIPE_ACCOUNT.match(stripe_account_id):
        raise BadRequest("stripe_account_id must be a Stripe connected account id (acct_...)")
    if paypal_email is not None and not EMAIL.match(paypal_email):
        raise BadRequest("paypal_email must be an email address")
    try:
        async with transaction(runtime.sessions) as session:
            user = await session.get(User, worker.id, with_for_update=True)
            assert user is not None
            before = _methods(user)
            if stripe_account_id is not None and stripe_account_id != user.stripe_account_id:
                if runtime.providers.stripe.live:
                    raise StripeAccountNotOnboarded()
                taken = await session.scalar(
                    select(User.id).where(User.stripe_account_id == stripe_account_id)
                )
                if taken is not None:
                    raise StripeAccountTaken()
                user.stripe_account_id = stripe_account_id
                # What Stripe said of the previous account says nothing of this one: payouts
                # wait for its account.updated (live Stripe; see `payouts.service.request`).
                user.stripe_payouts_enabled = False
            if paypal_email is not None:
                user.paypal_email = paypal_email
            await session.flush()
            key = signals.runtime_key(runtime)
            for destination in (stripe_account_id, paypal_email):
                await signals.note_value(
                    session, key, worker.id, SignalKind.DESTINATION, destination
                )
            await audit_user(
                session,
                worker.id,
                "payout_methods.updated",
                actor_id=worker.id,
                before=before,
                after=_methods(user),
            )
    except IntegrityError as exc:  # another worker took the account at the same moment
        raise StripeAccountTaken() from exc
    return user


def _methods(user: User) -> dict[str, str | None]:
    """The worker's payout methods as the audit row shows them, before and after."""
    return {"stripe_account_id": user.stripe_account_id, "paypal_email": user.paypal_email}
