"""What each provider accepts: its currencies and its amount rules, in one place.

A payment, refund or payout the provider would refuse is refused here first, with a 400
naming the rule, before anything is written or any provider is called: refused at the
provider it would leave a failed payment behind (or a payout that fails only when an admin
processes it). Every adapter and simulator declares its table as `currency_rules`
(`PaymentProvider` in base.py), so the simulators refuse exactly what the providers do.

Currencies are those of kit.money (the ones the service handles at all); each table names
the subset its provider takes. Amounts are integer minor units in kit.money's exponents.

Sources (checked 2026-11-27 with the documentation search; quoted pages as stored):
- Stripe, "Supported currencies" https://docs.stripe.com/currencies (sections "Supported
  presentment currencies", "Three-decimal currencies", "Special cases", "Minimum and
  maximum charge amounts"; the per-currency minimums as the page listed them on
  2026-07-10), and the PaymentIntent API reference ("The amount value supports up to
  eight digits") https://docs.stripe.com/api/payment_intents/create.
- PayPal, "Currency codes" https://developer.paypal.com/reference/currency-codes and
  "PayPal supported currencies"
  https://developer.paypal.com/docs/reports/sftp-reports/reference/paypal-supported-currencies/
  (HUF, JPY, TWD: "This currency does not support decimals"); "Fees and transaction
  limits" https://developer.paypal.com/payouts/fees (a payout item is at most
  USD 20,000.00, or its equivalent in local currency).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from handwork_payments.kit import money
from handwork_payments.kit.errors import BadRequest


class NotAccepted(BadRequest):
    """The provider would refuse this currency or amount: its rule, by name."""


@dataclass(frozen=True)
class CurrencyRules:
    """One provider's table. `step`: charges and refunds must be a multiple of it (minor
    units), `payout_step` payouts; `minimum`: the least a charge may be, where the provider
    fixes one; `maximum`: the most one charge may be; `payout_maximum`: the most one payout
    may be, per currency."""

    provider: str  # as said to people: "Stripe", "PayPal"
    currencies: frozenset[str]
    payout_currencies: frozenset[str]
    maximum: int
    step: Mapping[str, int] = field(default_factory=dict)
    payout_step: Mapping[str, int] = field(default_factory=dict)
    minimum: Mapping[str, int] = field(default_factory=dict)
    payout_maximum: Mapping[str, int] = field(default_factory=dict)

    def payment_problem(self, amount: int, currency: str) -> str | None:
        """Why the provider would refuse a charge (a hold, a capture) of `amount`, or None."""
        if currency not in self.currencies:
            return f"{self.provider} does not accept {currency}"
        least = self.minimum.get(currency)
        if least is not None and amount < least:
            return f"{self.provider} needs at least {_shown(least, currency)}"
        if amount > self.maximum:
            return f"{self.provider} takes at most {_shown(self.maximum, currency)} at once"
        return self.amount_problem(amount, currency)

    def amount_problem(self, amount: int, currency: str) -> str | None:
        """Why the provider would refuse this amount in a charge or a refund, or None."""
        return self._step_problem(amount, currency, self.step.get(currency, 1))

    def _step_problem(self, amount: int, currency: str, step: int) -> str | None:
        if amount % step == 0:
            return None
        if step == 10 ** money.exponent(currency):
            return f"{self.provider} takes {currency} in whole units only"
        return f"{currency} amounts on {self.provider} must end in {'0' * len(str(step - 1))}"

    def payout_problem(self, amount: int, currency: str) -> str | None:
        """Why the provider would refuse to pay `amount` out to a worker, or None."""
        if currency not in self.payout_currencies:
            return f"{self.provider} does not pay out {currency}"
        most = self.payout_maximum.get(currency)
        if most is not None and amount > most:
            return f"{self.provider} pays out at most {_shown(most, currency)} at once"
        return self._step_problem(amount, currency, self.payout_step.get(currency, 1))

    def check_payment(self, amount: int, currency: str) -> None:
        _refuse(self.payment_problem(amount, currency))

    def check_amount(self, amount: int, currency: str) -> None:
        _refuse(self.amount_problem(amount, currency))

    def check_payout(self, amount: int, currency: str) -> None:
        _refuse(self.payout_problem(amount, currency))


def _shown(minor: int, currency: str) -> str:
    return f"{money.format_amount(minor, currency)} {currency}"


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise NotAccepted(problem)


def _minor(table: Mapping[str, str]) -> Mapping[str, int]:
    """Major-unit amounts as the docs write them, in minor units."""
    return MappingProxyType({c: money.to_minor(v, c) for c, v in table.items()})


# --- Stripe --------------------------------------------------------------------------------

# The presentment currencies kit.money knows, less ISK and UGX: Stripe takes those two as
# two-decimal amounts ("to charge 5 ISK, provide an amount value of 500", Special cases)
# while we hold them in whole units (ISO 4217 exponent 0), so the adapter would charge a
# hundredth of the price. The three-decimal ones are live presentment currencies (listed
# for, e.g., UAE accounts).
STRIPE_CURRENCIES = frozenset(money.CURRENCY_EXPONENTS) - {"ISK", "UGX"}
# "these API calls [Payment Intents, Refunds, Disputes] require the least-significant
# (last) digit to be 0 ... 5.124 KWD must be rounded to 5120 or 5130."
# Transfers to connected accounts (our payouts) are not among the flows named: no step.
STRIPE_THREE_DECIMAL_STEP = dict.fromkeys(("BHD", "JOD", "KWD", "OMR", "TND"), 10)
# "Minimum and maximum charge amounts": the minimum of the settlement currency. Exact when
# a charge settles in its own currency (ours do: no conversion anywhere); a currency the
# table does not list has no minimum we can know before Stripe converts it.
STRIPE_MINIMUM = _minor(
    {
        "USD": "0.50",
        "AED": "2.00",
        "AUD": "0.50",
        "BRL": "0.50",
        "CAD": "0.50",
        "CHF": "0.50",
        "CZK": "15.00",
        "DKK": "2.50",
        "EUR": "0.50",
        "GBP": "0.30",
        "HKD": "4.00",
        "HUF": "175.00",
        "ILS": "0.50",
        "INR": "0.50",
        "JPY": "50",
        "KRW": "50",
        "MXN": "10",
        "MYR": "2.00",
        "NOK": "3.00",
        "NZD": "0.50",
        "PHP": "0.50",
        "PLN": "2.00",
        "RON": "2.00",
        "SEK": "3.00",
        "SGD": "0.50",
        "THB": "10",
        "ZAR": "0.50",
    }
)
# "The amount value supports up to eight digits" (PaymentIntent API reference; cards may
# take more, other payment methods not): 99,999,999 minor units, whatever the currency.
STRIPE_MAXIMUM = 99_999_999

STRIPE = CurrencyRules(
    provider="Stripe",
    currencies=STRIPE_CURRENCIES,
    # Connect transfers move the platform's balance in the charge's own currency.
    payout_currencies=STRIPE_CURRENCIES,
    maximum=STRIPE_MAXIMUM,
    step=MappingProxyType(STRIPE_THREE_DECIMAL_STEP),
    minimum=STRIPE_MINIMUM,
)

# --- PayPal --------------------------------------------------------------------------------

# The REST API's currency codes that kit.money knows. BRL, CNY and MYR are "supported as a
# payment currency ... for in-country PayPal accounts only" (others' receipts are
# converted by PayPal); INR is absent (no domestic service in India since 2021-04-01); no
# three-decimal currency is on the list.
PAYPAL_CURRENCIES = frozenset(
    {
        "AUD",
        "BRL",
        "CAD",
        "CHF",
        "CNY",
        "CZK",
        "DKK",
        "EUR",
        "GBP",
        "HKD",
        "HUF",
        "ILS",
        "JPY",
        "MXN",
        "MYR",
        "NOK",
        "NZD",
        "PHP",
        "PLN",
        "SEK",
        "SGD",
        "THB",
        "TWD",
        "USD",
    }
)
# "This currency does not support decimals. If you pass a decimal amount, an error
# occurs": ISO 4217 gives HUF and TWD two decimals (JPY none, so it needs no step).
PAYPAL_WHOLE_UNITS = {"HUF": 100, "TWD": 100}
# PayPal documents no fixed ceiling for an order (an account's own limit answers
# TRANSACTION_LIMIT_EXCEEDED); the service's own ceiling applies.
PAYPAL_MAXIMUM = money.MAX_AMOUNT_MINOR
# "Individual payout maximum: $20,000.00 USD" (US); elsewhere its local equivalent, which
# no table can know without a rate: checked in USD only.
PAYPAL_PAYOUT_MAXIMUM = _minor({"USD": "20000.00"})

PAYPAL = CurrencyRules(
    provider="PayPal",
    currencies=PAYPAL_CURRENCIES,
    payout_currencies=PAYPAL_CURRENCIES,
    maximum=PAYPAL_MAXIMUM,
    step=MappingProxyType(PAYPAL_WHOLE_UNITS),
    payout_step=MappingProxyType(PAYPAL_WHOLE_UNITS),
    payout_maximum=PAYPAL_PAYOUT_MAXIMUM,
)

RULES: Mapping[str, CurrencyRules] = MappingProxyType({"stripe": STRIPE, "paypal": PAYPAL})
