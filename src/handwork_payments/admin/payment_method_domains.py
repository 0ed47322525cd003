"""The marketplace's front-end domains registered with Stripe for wallets (Stripe's
PaymentMethodDomain API): Apple Pay shows in the Payment Request Button / Express Checkout
Element only on a registered, verified domain; Google Pay and Link use the same
registration. Admins register a domain and list them; Stripe keeps them (the simulator
too), so nothing is stored here but the audit row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, StringConstraints

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.http.deps import ADMIN_ONLY, AdminUser, RuntimeDep
from handwork_payments.http.responses import PROVIDER_SETUP
from handwork_payments.kit.errors import BadRequest, ProviderUnavailable
from handwork_payments.kit.schemas import Strict
from handwork_payments.models import PaymentMethod
from handwork_payments.providers.base import (
    PaymentMethodDomain,
    PaymentMethodDomainProvider,
    ProviderError,
    ProviderUnavailableError,
)
from handwork_payments.runtime import Runtime

router = APIRouter(prefix="/admin/stripe", tags=["administration"], dependencies=[ADMIN_ONLY])

# A host name as DNS spells it (RFC 1123 labels, a dot, an alphabetic or punycode top-level
# label): no scheme, port, path, wildcard or IP address, which Stripe cannot register.
# Either case (a name is stored lower-cased).
DOMAIN_PATTERN = (
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{1,59})$"
)
DomainName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, min_length=4, max_length=253, pattern=DOMAIN_PATTERN
    ),
]
# How many domains GET lists (a marketplace has a handful of front ends).
MAX_LISTED = 100
# Audit and alerts name the installation (its one row) as what a registration changes.
INSTALLATION = ("installation", 1)


class DomainCreate(Strict):
    domain: DomainName


class DomainOut(BaseModel):
    id: str
    domain: str
    enabled: bool
    # wallet -> "active" | "inactive" on this domain, as Stripe says
    wallets: dict[str, str]
    created_at: datetime | None

    @classmethod
    def of(cls, found: PaymentMethodDomain) -> DomainOut:
        return cls(
            id=found.domain_id,
            domain=found.domain_name,
            enabled=found.enabled,
            wallets=dict(found.statuses),
            created_at=found.created,
        )


class DomainList(BaseModel):
    items: list[DomainOut]


def _provider(runtime: Runtime) -> PaymentMethodDomainProvider:
    provider = runtime.providers.for_method(PaymentMethod.STRIPE)  # 400 when not configured
    assert isinstance(provider, PaymentMethodDomainProvider), provider
    return provider


def idempotency_key(domain_name: str) -> str:
    """From the domain itself (hashed: a name may be 253 characters, keys fewer)."""
    return f"payment-method-domain-{hashlib.sha256(domain_name.encode()).hexdigest()[:32]}"


@contextmanager
def _asking_stripe(again: str, refused: str) -> Iterator[None]:
    """Stripe's silence is a 503 that says what to do `again`; its refusal a 400 that says
    what it `refused` and why."""
    try:
        yield
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(f"stripe did not answer; {again}") from exc
    except ProviderError as exc:
        raise BadRequest(f"stripe refused {refused}: {exc.message}") from exc


async def register(runtime: Runtime, admin_id: int, domain_name: str) -> PaymentMethodDomain:
    provider = _provider(runtime)
    with _asking_stripe("register the domain again (it is registered once)", "the domain"):
        found = await provider.register_domain(
            domain_name, idempotency_key=idempotency_key(domain_name)
        )
    async with transaction(runtime.sessions) as session:
        await record(
            session,
            actor_id=admin_id,
            action="stripe.payment_method_domain.registered",
            object_type=INSTALLATION[0],
            object_id=INSTALLATION[1],
            after={"domain_id": found.domain_id, "domain": found.domain_name, **found.statuses},
        )
        inactive = sorted(w for w, s in found.statuses.items() if s != "active")
        if inactive:
            # Apple Pay stays inactive until Stripe has verified the domain-association
            # file served from the domain: a person must put it there and validate again.
            await alert(
                session,
                "payment_method_domain_inactive",
                f"Stripe registered {found.domain_name}, but {', '.join(inactive)} "
                "is inactive there: serve Apple's domain-association file and validate it",
                *INSTALLATION,
            )
    return found


async def listed(runtime: Runtime) -> list[PaymentMethodDomain]:
    provider = _provider(runtime)
    with _asking_stripe("list the domains again", "to list the domains"):
        return await provider.list_domains(limit=MAX_LISTED)


@router.post(
    "/payment-method-domains",
    status_code=status.HTTP_201_CREATED,
    response_model=DomainOut,
    responses=PROVIDER_SETUP,
)
async def register_domain(body: DomainCreate, admin: AdminUser, runtime: RuntimeDep) -> DomainOut:
    """Register a front-end domain for Apple Pay, Google Pay and Link (registering it
    again answers the same domain)."""
    return DomainOut.of(await register(runtime, admin.id, body.domain))


@router.get("/payment-method-domains", response_model=DomainList, responses=PROVIDER_SETUP)
async def list_domains(runtime: RuntimeDep) -> DomainList:
    return DomainList(items=[DomainOut.of(d) for d in await listed(runtime)])
