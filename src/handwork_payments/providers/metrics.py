"""How long each provider call takes and how it ends, measured at the one place every
call passes: the adapters built by `build_providers` get each protocol method wrapped."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Histogram

from handwork_payments.providers.base import ProviderError, ProviderUnavailableError

PROVIDER_SECONDS = Histogram(
    "handwork_provider_request_seconds",
    "Provider calls: how long they took and how they ended (ok, refused, unavailable, error)",
    ["provider", "operation", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
)

# Every call of the protocols in base.py that may reach the provider. Event parsing is
# left out: it is signature checking, mostly without a request.
OPERATIONS = (
    "create_hold",
    "confirm_hold",
    "get_hold",
    "capture",
    "cancel",
    "refund",
    "reauthorize",
    "send_payout",
    "send_payout_batch",
    "find_payout",
    "create_connected_account",
    "create_account_link",
    "reverse_transfer",
    "register_domain",
    "list_domains",
)


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, ProviderUnavailableError):
        return "unavailable"
    if isinstance(exc, ProviderError):
        return "refused"
    return "error"


def _timed(
    provider: str, operation: str, call: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await call(*args, **kwargs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            PROVIDER_SECONDS.labels(provider, operation, _outcome(failure)).observe(
                time.perf_counter() - started
            )

    return timed


def instrument(adapter: Any) -> None:
    """Wrap the adapter's own methods on the instance: the object stays what it is (its
    class and the protocols it implements answer isinstance as before)."""
    for operation in OPERATIONS:
        method = getattr(adapter, operation, None)
        if method is not None:
            setattr(adapter, operation, _timed(adapter.name, operation, method))
