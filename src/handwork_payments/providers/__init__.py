"""Provider adapters: the real Stripe and PayPal APIs when their credentials are set, the
built-in simulators otherwise (said loudly at start-up and in /health)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from handwork_payments.db import Sessions
from handwork_payments.models import PaymentMethod
from handwork_payments.providers.base import PaymentProvider
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Providers:
    stripe: PaymentProvider
    paypal: PaymentProvider

    def for_method(self, method: PaymentMethod | str) -> PaymentProvider:
        return self.stripe if PaymentMethod(method) is PaymentMethod.STRIPE else self.paypal

    def modes(self) -> dict[str, str]:
        return {p.name: "live" if p.live else "simulated" for p in (self.stripe, self.paypal)}

    async def aclose(self) -> None:
        for provider in (self.stripe, self.paypal):
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()


def build_providers(settings: Settings, sessions: Sessions) -> Providers:
    from handwork_payments.providers.simulated import SimulatedPayPal, SimulatedStripe

    stripe: PaymentProvider
    paypal: PaymentProvider
    if settings.stripe_live:
        from handwork_payments.providers.stripe import StripeProvider

        stripe = StripeProvider(settings)
    else:
        log.warning("STRIPE_SECRET_KEY is not set: Stripe payments use the built-in simulator")
        stripe = SimulatedStripe(sessions, settings)
    if settings.paypal_live:
        from handwork_payments.providers.paypal import PayPalProvider

        paypal = PayPalProvider(settings)
    else:
        log.warning("PAYPAL_CLIENT_ID is not set: PayPal payments use the built-in simulator")
        paypal = SimulatedPayPal(sessions, settings)
    return Providers(stripe=stripe, paypal=paypal)
