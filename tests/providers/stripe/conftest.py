"""The real service with real Stripe: our HTTP API, the official SDK, a Stripe peer.

- localstripe (or Stripe's test mode when STRIPE_SECRET_KEY=sk_test_... is set): escrow
  with manual capture (pm_card_visa -> held -> release captures), a partial refund before
  release capturing less, a full refund before release canceling the intent, refunds
  after release, charge-time and confirm-time declines (4000000000000341) as 402s,
  3-D Secure (4000002500003155) finished through localstripe's `_authenticate`, and
  localstripe's own signed webhooks delivered to our endpoint over HTTP.
- the request-level double (tests/peers/stripe_double.py), for what localstripe lacks:
  Connect onboarding, transfers and reversals, idempotent replay after a lost answer,
  decline codes, and the events localstripe never sends (charge.refunded, disputes,
  transfer.reversed, account.updated, canceled intents), signed with our test secret.

Amounts are exact; the ledger's invariants are checked after every test (conftest).

This module: the suite's fixtures (the Stripe peer, the double, the services on them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import stripe

from handwork_payments.providers.stripe import StripeProvider
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import Api
from tests.peers.localstripe_server import running_localstripe
from tests.peers.stripe_double import StripeDouble
from tests.providers.stripe.harness import (
    _ENV_KEY,
    CONNECT_WEBHOOK_SECRET,
    PREFIX,
    STRIPE_TEST_MODE,
    Peer,
    _say,
    api_for,
)


@pytest.fixture(scope="session")
def stripe_peer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Peer]:
    if STRIPE_TEST_MODE:
        _say(request, "Stripe integration: running against Stripe's test mode (STRIPE_SECRET_KEY)")
        yield Peer(name="stripe test mode", secret_key=_ENV_KEY, api_base=None)
        return
    log = tmp_path_factory.mktemp("localstripe-integration") / "stderr.log"
    with running_localstripe(log) as local:
        _say(
            request,
            f"Stripe integration: no sk_test_ STRIPE_SECRET_KEY, using localstripe at {local.url}",
        )
        yield Peer("localstripe", local.secret_key, local.url, local)


@pytest.fixture
async def peer_api(runtime: Runtime, database_url: str, stripe_peer: Peer) -> AsyncIterator[Api]:
    """The service with STRIPE_SECRET_KEY and STRIPE_API_BASE pointing at the peer. (It
    asks for `runtime` so conftest empties the tables and checks the ledger.)"""
    settings = make_settings(
        database_url,
        stripe_secret_key=stripe_peer.secret_key,
        stripe_api_base=stripe_peer.api_base,
        provider_timeout_seconds=30.0 if stripe_peer.api_base is None else 10.0,
        provider_id_prefix=PREFIX,
    )
    built = Runtime.build(settings, database_url)
    assert isinstance(built.providers.stripe, StripeProvider)
    try:
        async with api_for(built) as api:
            yield api
    finally:
        await built.aclose()


@pytest.fixture
async def raw(stripe_peer: Peer) -> AsyncIterator[stripe.StripeClient]:
    """A plain SDK client: what the payer's browser or Stripe's dashboard would do."""
    http = stripe.HTTPXClient(timeout=30)
    client = stripe.StripeClient(
        stripe_peer.secret_key,
        http_client=http,
        base_addresses={"api": stripe_peer.api_base} if stripe_peer.api_base else None,
    )
    yield client
    await http.close_async()


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble() as peer:
        yield peer


@pytest.fixture
async def dbl(runtime: Runtime, database_url: str, double: StripeDouble) -> AsyncIterator[Api]:
    """The service against the request-level double: no SDK network retries and a short
    timeout, so each test scripts exactly the faults it wants."""
    settings = make_settings(
        database_url,
        stripe_secret_key=double.secret_key,
        stripe_api_base=double.url,
        stripe_connect_webhook_secret=CONNECT_WEBHOOK_SECRET,
        provider_timeout_seconds=2.0,
        provider_id_prefix=PREFIX,
    )
    built = Runtime.build(settings, database_url)
    await built.providers.aclose()
    built.providers.stripe = StripeProvider(
        settings,
        max_network_retries=0,
        rate_limit_base_delay_seconds=0.01,
        ids=built.providers.ids,
    )
    try:
        async with api_for(built) as api:
            yield api
    finally:
        await built.aclose()


@pytest.fixture
async def dashboard(double: StripeDouble) -> AsyncIterator[stripe.StripeClient]:
    """Someone acting in Stripe's dashboard (here: on the double)."""
    http = stripe.HTTPXClient(timeout=10)
    yield stripe.StripeClient(
        double.secret_key, http_client=http, base_addresses={"api": double.url}
    )
    await http.close_async()
