"""Stripe Connect onboarding: a worker gets an Express connected account (created once)
and an Account Link to Stripe's hosted onboarding, after which Stripe's `account.updated`
says whether payouts are enabled (webhooks.handlers)."""

from __future__ import annotations

import logging

from handwork_payments.audit.service import record
from handwork_payments.connect.reversals import connect_provider
from handwork_payments.db import transaction
from handwork_payments.kit.errors import BadRequest, ProviderUnavailable
from handwork_payments.models import User
from handwork_payments.providers.base import ProviderError, ProviderUnavailableError
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)


async def onboarding_link(runtime: Runtime, worker: User) -> tuple[str, str]:
    """(account id, Account Link URL) for the worker, creating their Express account when
    they have none. The account is created outside any transaction under the key
    `connect-account-{worker_id}` (a retry after a lost answer gets the same account) and
    stored by the transaction that learns it."""
    provider = connect_provider(runtime)
    async with runtime.sessions() as session:
        user = await session.get(User, worker.id)
        assert user is not None
        account_id, email = user.stripe_account_id, user.email
    try:
        if account_id is None:
            created = await provider.create_connected_account(worker_id=worker.id, email=email)
            account_id = await _store(runtime, worker.id, created)
        url = await provider.create_account_link(
            account_id=account_id,
            refresh_url=runtime.settings.stripe_connect_refresh_url,
            return_url=runtime.settings.stripe_connect_return_url,
        )
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(
            "Stripe did not answer; ask again (the same account is used)"
        ) from exc
    except ProviderError as exc:
        raise BadRequest(f"Stripe refused the onboarding: {exc.message}") from exc
    return account_id, url


async def _store(runtime: Runtime, worker_id: int, account_id: str) -> str:
    """Keep the account Stripe created unless the worker got one meanwhile (a concurrent
    request: the same account, by the key; or PUT /payments/payout-methods: theirs wins,
    it was set on purpose). Returns the worker's account."""
    async with transaction(runtime.sessions) as session:
        user = await session.get(User, worker_id, with_for_update=True, populate_existing=True)
        assert user is not None
        if user.stripe_account_id is not None:
            if user.stripe_account_id != account_id:
                log.warning(
                    "worker %s set account %s while %s was being created for them; keeping theirs",
                    worker_id,
                    user.stripe_account_id,
                    account_id,
                )
            return user.stripe_account_id
        user.stripe_account_id = account_id
        user.stripe_payouts_enabled = False
        await record(
            session,
            actor_id=worker_id,
            action="stripe_account.created",
            object_type="user",
            object_id=worker_id,
            before={"stripe_account_id": None},
            after={"stripe_account_id": account_id},
        )
        return account_id
