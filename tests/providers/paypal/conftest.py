"""The real service over our HTTP API with PayPal for real: the PayPalProvider (httpx)
talking to the stateful PayPal double (tests/peers/paypal_double.py) served on 127.0.0.1,
every request and response validated against PayPal's official OpenAPI specs in
../shared/paypal-openapi/ (each test ends asserting that every exchange was validated and
none broke the specs); and, with PAYPAL_MODE=sandbox and sandbox credentials in the
environment, the flows that need no human buyer against PayPal's sandbox itself.

Exact amounts throughout; the ledger's invariants are checked after every test (conftest).

This module: the suite's fixtures (PayPal's specs, the double, the service on it)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

from handwork_payments.providers.paypal import PayPalProvider
from handwork_payments.runtime import Runtime
from tests.helpers import Api
from tests.peers.paypal_double import PayPalDouble, SpecValidator, iter_paypal_double
from tests.providers.paypal.harness import (
    CLIENT_TIMEOUT_SECONDS,
    _say,
    assert_spec_checked,
    paypal_settings,
    service,
)

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def paypal_specs(pytestconfig: pytest.Config) -> Iterator[SpecValidator]:
    """PayPal's specs, loaded once; absent specs are said out loud, and the session ends
    with the counts of what was validated in this file."""
    validator = SpecValidator()
    if not validator.enabled:
        warnings.warn(pytest.PytestWarning(validator.reason), stacklevel=1)
        _say(pytestconfig, f"NOTE: {validator.reason}")
    yield validator
    _say(pytestconfig, f"[integration] {validator.summary()}")
    ops = ", ".join(f"{op}={n}" for op, n in sorted(validator.report.operations.items()))
    _say(pytestconfig, f"[integration] validated per operation: {ops}")


@pytest.fixture
def double(paypal_specs: SpecValidator) -> Iterator[PayPalDouble]:
    yield from iter_paypal_double(paypal_specs, stall_seconds=CLIENT_TIMEOUT_SECONDS * 2)


@pytest.fixture
async def api(runtime: Runtime, database_url: str, double: PayPalDouble) -> AsyncIterator[Api]:
    """The real service, its PayPal the double (`runtime` is the session's, for the clean
    tables and the ledger check after the test). Afterwards: every exchange with the
    double was validated against the specs, and none broke them."""
    built = Runtime.build(paypal_settings(database_url, double), database_url)
    assert isinstance(built.providers.paypal, PayPalProvider), "PayPal must be live here"
    assert built.providers.modes()["paypal"] == "live"
    try:
        async with service(built) as api:
            yield api
    finally:
        await built.aclose()
    assert_spec_checked(double)
