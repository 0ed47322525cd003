"""The Stripe adapter's wallets, stablecoin intents and payment method domains against the
request-level double (tests/peers/stripe_double.py): what the SDK sends, byte for byte, and
what the adapter reads back. No extra round trip for the wallet: it comes from the charge the
intent read already expands."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from handwork_payments.providers.base import (
    HoldRef,
    HoldState,
    NewHold,
    ProviderError,
    ProviderUnavailableError,
)
from handwork_payments.providers.stripe import StripeProvider
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from tests.peers.stripe_double import StripeDouble

PREFIX = "w" + uuid.uuid4().hex[:10]

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble() as peer:
        yield peer


@pytest.fixture
async def on_double(double: StripeDouble) -> AsyncIterator[StripeProvider]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        stripe_secret_key=double.secret_key,
        stripe_api_base=double.url,
        provider_timeout_seconds=1.0,
        provider_id_prefix=PREFIX,
    )
    adapter = StripeProvider(settings, max_network_retries=0, rate_limit_base_delay_seconds=0.01)
    yield adapter
    await adapter.aclose()


@pytest.mark.parametrize(
    ("payment_method", "wallet"),
    [
        ("pm_card_visa_apple_pay", "apple_pay"),
        ("pm_card_visa_google_pay", "google_pay"),
        ("pm_card_link", "link"),
        ("pm_card_visa", None),
    ],
)
async def test_wallet_is_read_from_the_expanded_charge(
    on_double: StripeProvider, double: StripeDouble, payment_method: str, wallet: str | None
) -> None:
    hold = await on_double.create_hold(
        NewHold(
            payment_id=7, booking_id=8, amount=2500, currency="USD", payment_method=payment_method
        ),
        idempotency_key="payment-7-hold",
    )
    assert (hold.state, hold.amount, hold.wallet) == (HoldState.AUTHORIZED, 2500, wallet)
    again = await on_double.get_hold(HoldRef(hold.provider_payment_id))
    assert again.wallet == wallet
    # One create and one retrieve: the wallet cost no request of its own.
    assert [(r.method, r.path) for r in double.requests()] == [
        ("POST", "/v1/payment_intents"),
        ("GET", f"/v1/payment_intents/{hold.provider_payment_id}"),
    ]


async def test_other_wallets_are_recorded_as_none(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    hold = await on_double.create_hold(
        NewHold(
            payment_id=9, booking_id=9, amount=900, currency="USD", payment_method="pm_card_visa"
        ),
        idempotency_key="payment-9-hold",
    )
    charge = double.charges[double.intents[hold.provider_payment_id]["latest_charge"]]
    charge["payment_method_details"]["card"]["wallet"] = {"type": "samsung_pay", "samsung_pay": {}}
    assert (await on_double.get_hold(HoldRef(hold.provider_payment_id))).wallet is None


async def test_stablecoin_intent_asks_for_crypto_without_manual_capture(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    hold = await on_double.create_hold(
        NewHold(payment_id=11, booking_id=12, amount=15000, currency="USD", stablecoin=True),
        idempotency_key="payment-11-hold",
    )
    (sent,) = double.requests("POST", "/v1/payment_intents")
    assert sent.form == {
        "amount": "15000",
        "currency": "usd",
        "metadata[payment_id]": "11",
        "metadata[booking_id]": "12",
        "metadata[reference]": f"{PREFIX}-payment-11",
        "expand[0]": "latest_charge",
        "expand[1]": "latest_charge.balance_transaction",
        "allowed_payment_method_types[0]": "crypto",
    }
    assert sent.idempotency_key == f"{PREFIX}-payment-11-hold"
    # Waiting for the payer (Stripe.js redirects to crypto.stripe.com): nothing confirmed.
    assert hold.state is HoldState.REQUIRES_PAYMENT_METHOD and hold.client_secret
    intent = double.intents[hold.provider_payment_id]
    assert (intent["capture_method"], intent["payment_method_types"]) == ("automatic", ["crypto"])


async def test_stablecoin_refused_where_the_account_lacks_crypto(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    double.crypto_available = False
    with pytest.raises(ProviderError) as refused:
        await on_double.create_hold(
            NewHold(payment_id=13, booking_id=13, amount=500, currency="USD", stablecoin=True),
            idempotency_key="payment-13-hold",
        )
    assert refused.value.code == "crypto_unavailable"


async def test_domains_registered_once_and_listed_page_by_page(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    names = [f"shop{i}.example.com" for i in range(3)]
    for name in names:
        found = await on_double.register_domain(name, idempotency_key=f"pmd-{name}")
        assert (found.domain_name, found.enabled) == (name, True)
        assert found.statuses == {"apple_pay": "active", "google_pay": "active", "link": "active"}
    again = await on_double.register_domain(names[0], idempotency_key=f"pmd-{names[0]}")
    assert again.domain_id == next(iter(double.domains))
    creates = double.requests("POST", "/v1/payment_method_domains")
    assert creates[0].form == {"domain_name": names[0]}
    assert creates[0].idempotency_key == f"{PREFIX}-pmd-{names[0]}"

    assert [d.domain_name for d in await on_double.list_domains(limit=100)] == names[::-1]
    # A limit below what there is: pages of that size, no more than asked for.
    assert [d.domain_name for d in await on_double.list_domains(limit=2)] == names[:0:-1]
    lists = double.requests("GET", "/v1/payment_method_domains")
    assert [r.query for r in lists] == [{"limit": "100"}, {"limit": "2"}]


async def test_domain_registration_without_an_answer_is_unavailable(
    on_double: StripeProvider, double: StripeDouble
) -> None:
    double.hang_next("POST", "/v1/payment_method_domains", after_effect=True)
    with pytest.raises(ProviderUnavailableError):
        await on_double.register_domain("late.example.com", idempotency_key="pmd-late")
    # Asked again under the same key: the one domain the lost answer made.
    found = await on_double.register_domain("late.example.com", idempotency_key="pmd-late")
    assert [d["domain_name"] for d in double.domains.values()] == ["late.example.com"]
    assert found.domain_name == "late.example.com"


async def test_the_simulator_refuses_stablecoins_in_another_currency(runtime: Runtime) -> None:
    with pytest.raises(ProviderError) as refused:
        await runtime.providers.stripe.create_hold(
            NewHold(payment_id=1, booking_id=1, amount=500, currency="EUR", stablecoin=True),
            idempotency_key="payment-1-hold",
        )
    assert refused.value.code == "payment_intent_invalid_parameter"
