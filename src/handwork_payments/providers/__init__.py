"""Provider adapters and their modes. A provider is `live` when its credentials are set.
Without them it is `simulated` (the built-in simulator, said loudly at start-up and in
/health) only while no provider is live: once one is, money simulated through the other
could be paid out for real through it, so the other is `disabled` (not offered: its
endpoints answer 400) unless ALLOW_SIMULATED_PROVIDERS says otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from handwork_payments.db import Sessions
from handwork_payments.kit.errors import BadRequest
from handwork_payments.models import PaymentMethod
from handwork_payments.providers.base import (
    PaymentProvider,
    ProviderEvent,
    ProviderHold,
    ProviderIds,
)
from handwork_payments.providers.currencies import RULES, CurrencyRules
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)

Mode = Literal["live", "simulated", "disabled"]


class ProviderNotConfigured(BadRequest):
    """The provider is not offered by this deployment (no credentials)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not configured")


def provider_modes(settings: Settings) -> dict[str, Mode]:
    """What each provider is, from the settings alone (start-up checks use it too)."""
    live = {"stripe": settings.stripe_live, "paypal": settings.paypal_live}
    simulate = settings.allow_simulated_providers or not any(live.values())
    return {
        name: "live" if is_live else "simulated" if simulate else "disabled"
        for name, is_live in live.items()
    }


class DisabledProvider:
    """Stands in for a provider that is not offered: whatever reaches it (a payment, a
    payout, a webhook) is refused with ProviderNotConfigured, never simulated."""

    live = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.currency_rules = RULES[name]

    def _refuse(self) -> NoReturn:
        raise ProviderNotConfigured(self.name)

    async def create_hold(self, *_: Any, **__: Any) -> ProviderHold:
        self._refuse()

    async def confirm_hold(self, *_: Any, **__: Any) -> ProviderHold:
        self._refuse()

    async def get_hold(self, *_: Any, **__: Any) -> ProviderHold:
        self._refuse()

    async def capture(self, *_: Any, **__: Any) -> Any:
        self._refuse()

    async def cancel(self, *_: Any, **__: Any) -> None:
        self._refuse()

    async def refund(self, *_: Any, **__: Any) -> Any:
        self._refuse()

    async def send_payout(self, *_: Any, **__: Any) -> Any:
        self._refuse()

    async def find_payout(self, *_: Any, **__: Any) -> Any:
        self._refuse()

    async def parse_event(self, *_: Any, **__: Any) -> ProviderEvent:
        self._refuse()

    async def translate_event(self, *_: Any, **__: Any) -> ProviderEvent:
        self._refuse()


@dataclass
class Providers:
    stripe: PaymentProvider
    paypal: PaymentProvider
    ids: ProviderIds

    def _of(self, method: PaymentMethod | str) -> PaymentProvider:
        return self.stripe if PaymentMethod(method) is PaymentMethod.STRIPE else self.paypal

    def for_method(self, method: PaymentMethod | str) -> PaymentProvider:
        """The provider of `method`; ProviderNotConfigured (400) when it is disabled."""
        provider = self._of(method)
        if isinstance(provider, DisabledProvider):
            raise ProviderNotConfigured(provider.name)
        return provider

    def rules(self, method: PaymentMethod | str) -> CurrencyRules:
        """What the provider of `method` accepts (disabled or not)."""
        return self._of(method).currency_rules

    def offers(self, method: PaymentMethod | str) -> bool:
        return not isinstance(self._of(method), DisabledProvider)

    def ensure_offered(self, method: PaymentMethod | str) -> None:
        """Refuse (400) a request for a disabled provider before anything is written."""
        self.for_method(method)

    def mode(self, provider: PaymentProvider) -> Mode:
        if isinstance(provider, DisabledProvider):
            return "disabled"
        return "live" if provider.live else "simulated"

    def modes(self) -> dict[str, Mode]:
        return {p.name: self.mode(p) for p in (self.stripe, self.paypal)}

    async def aclose(self) -> None:
        for provider in (self.stripe, self.paypal):
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()


def build_providers(settings: Settings, sessions: Sessions, ids: ProviderIds) -> Providers:
    from handwork_payments.providers.simulated import SimulatedPayPal, SimulatedStripe

    modes = provider_modes(settings)
    stripe: PaymentProvider
    paypal: PaymentProvider
    if modes["stripe"] == "live":
        from handwork_payments.providers.stripe import StripeProvider

        stripe = StripeProvider(settings, ids=ids)
    elif modes["stripe"] == "simulated":
        # Said by `serve`'s banner and /health.
        log.info("STRIPE_SECRET_KEY is not set: Stripe payments use the built-in simulator")
        stripe = SimulatedStripe(sessions, settings, ids)
    else:
        stripe = DisabledProvider("stripe")
    if modes["paypal"] == "live":
        from handwork_payments.providers.paypal import PayPalProvider

        paypal = PayPalProvider(settings, ids=ids)
    elif modes["paypal"] == "simulated":
        log.info("PAYPAL_CLIENT_ID is not set: PayPal payments use the built-in simulator")
        paypal = SimulatedPayPal(sessions, settings, ids)
    else:
        paypal = DisabledProvider("paypal")
    _announce(modes)
    from handwork_payments.providers.metrics import instrument

    for adapter in (stripe, paypal):
        if not isinstance(adapter, DisabledProvider):
            instrument(adapter)
    return Providers(stripe=stripe, paypal=paypal, ids=ids)


def _announce(modes: dict[str, Mode]) -> None:
    if "live" not in modes.values():
        return
    for name, mode in modes.items():
        if mode == "disabled":
            log.warning(
                "%s is disabled: it has no credentials while another provider is live", name
            )
        elif mode == "simulated":
            log.warning(
                "ALLOW_SIMULATED_PROVIDERS=true: %s is simulated while another provider is "
                "live; simulated payments can be paid out for real",
                name,
            )
