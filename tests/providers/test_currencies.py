"""The providers' currency tables (providers/currencies.py): what each refuses, by the rule
it names, and the simulators refusing the same."""

from __future__ import annotations

import pytest

from handwork_payments.kit import money
from handwork_payments.providers.base import NewHold, PayoutOrder, ProviderError
from handwork_payments.providers.currencies import (
    PAYPAL,
    RULES,
    STRIPE,
    CurrencyRules,
    NotAccepted,
)
from handwork_payments.providers.paypal import paypal_value
from handwork_payments.runtime import Runtime
from tests.faults import simulator


@pytest.mark.parametrize(
    ("rules", "amount", "currency", "problem"),
    [
        (PAYPAL, 12340, "KWD", "PayPal does not accept KWD"),
        (PAYPAL, 1000, "BHD", "PayPal does not accept BHD"),
        (PAYPAL, 10000, "ZAR", "PayPal does not accept ZAR"),
        (PAYPAL, 12350, "HUF", "PayPal takes HUF in whole units only"),
        (PAYPAL, 80045, "TWD", "PayPal takes TWD in whole units only"),
        (STRIPE, 49, "USD", "Stripe needs at least 0.50 USD"),
        (STRIPE, 29, "GBP", "Stripe needs at least 0.30 GBP"),
        (STRIPE, 49, "JPY", "Stripe needs at least 50 JPY"),
        (STRIPE, 17499, "HUF", "Stripe needs at least 175.00 HUF"),
        (STRIPE, 12345, "KWD", "KWD amounts on Stripe must end in 0"),
        (STRIPE, 5124, "OMR", "OMR amounts on Stripe must end in 0"),
        (STRIPE, 500, "ISK", "Stripe does not accept ISK"),
        (STRIPE, 100_000_000, "JPY", "Stripe takes at most 99999999 JPY at once"),
    ],
)
def test_a_charge_the_provider_refuses_names_the_rule(
    rules: CurrencyRules, amount: int, currency: str, problem: str
) -> None:
    assert rules.payment_problem(amount, currency) == problem
    with pytest.raises(NotAccepted) as refused:
        rules.check_payment(amount, currency)
    assert refused.value.detail == problem and refused.value.status_code == 400


@pytest.mark.parametrize(
    ("rules", "amount", "currency"),
    [
        (STRIPE, 50, "USD"),
        (STRIPE, 30, "GBP"),
        (STRIPE, 50, "JPY"),
        (STRIPE, 12340, "KWD"),
        (STRIPE, 10, "KWD"),  # no minimum Stripe lists for KWD: 0.010 KWD
        (STRIPE, 99_999_999, "USD"),
        (PAYPAL, 1, "USD"),
        (PAYPAL, 1, "JPY"),
        (PAYPAL, 12300, "HUF"),
        (PAYPAL, 80000, "TWD"),
    ],
)
def test_what_the_provider_takes_passes(rules: CurrencyRules, amount: int, currency: str) -> None:
    assert rules.payment_problem(amount, currency) is None


def test_the_tables_hold_only_currencies_the_service_knows() -> None:
    for rules in RULES.values():
        assert rules.currencies <= set(money.CURRENCY_EXPONENTS)
        assert rules.payout_currencies <= rules.currencies
        assert set(rules.minimum) <= rules.currencies
        assert set(rules.step) <= rules.currencies
    # No three-decimal currency at PayPal; all five at Stripe, each in steps of 10.
    three = {c for c, e in money.CURRENCY_EXPONENTS.items() if e == 3}
    assert not three & PAYPAL.currencies
    assert {c: STRIPE.step[c] for c in three} == dict.fromkeys(three, 10)


def test_refunds_and_payouts_have_their_rules() -> None:
    assert STRIPE.amount_problem(1235, "KWD") == "KWD amounts on Stripe must end in 0"
    assert STRIPE.amount_problem(1, "USD") is None  # a refund has no minimum
    assert PAYPAL.payout_problem(1000, "KWD") == "PayPal does not pay out KWD"
    assert PAYPAL.payout_problem(2_000_001, "USD") == "PayPal pays out at most 20000.00 USD at once"
    assert PAYPAL.payout_problem(2_000_000, "USD") is None
    # Stripe names charges, refunds and disputes for the rule, not transfers.
    assert STRIPE.payout_problem(11106, "KWD") is None
    assert PAYPAL.payout_problem(12350, "HUF") == "PayPal takes HUF in whole units only"


def test_paypal_amounts_are_sent_in_whole_units_by_the_same_table() -> None:
    assert paypal_value(12300, "HUF") == "123" and paypal_value(1500, "JPY") == "1500"
    assert paypal_value(1234, "USD") == "12.34"


def test_every_adapter_declares_its_table(runtime: Runtime) -> None:
    assert runtime.providers.stripe.currency_rules is STRIPE
    assert runtime.providers.paypal.currency_rules is PAYPAL
    assert runtime.providers.rules("paypal") is PAYPAL


async def test_the_simulators_refuse_what_the_providers_refuse(runtime: Runtime) -> None:
    stripe, paypal = simulator(runtime, "stripe"), simulator(runtime, "paypal")
    with pytest.raises(ProviderError, match="KWD amounts on Stripe must end in 0"):
        await stripe.create_hold(NewHold(1, 1, 12345, "KWD"), idempotency_key="c-1")
    with pytest.raises(ProviderError, match=r"Stripe needs at least 0\.50 USD"):
        await stripe.create_hold(NewHold(2, 2, 49, "USD"), idempotency_key="c-2")
    with pytest.raises(ProviderError, match="PayPal does not accept KWD") as refused:
        await paypal.create_hold(NewHold(3, 3, 12340, "KWD"), idempotency_key="c-3")
    assert refused.value.code == "INVALID_CURRENCY_CODE"
    with pytest.raises(ProviderError, match="PayPal does not pay out KWD"):
        await paypal.send_payout(PayoutOrder(4, "w@example.com", 1000, "KWD"))
    (item,) = await paypal.send_payout_batch(
        [PayoutOrder(5, "w@example.com", 2_000_001, "USD")], "payout-batch-5"
    )
    assert item.failure_reason == "PayPal pays out at most 20000.00 USD at once"
