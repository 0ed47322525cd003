"""Rate limits on logins and registrations, counted in PostgreSQL so that every process
of the service shares them (fixed windows: one statement a check).

The client is the ASGI client address (the TCP peer). X-Forwarded-For is not trusted:
any caller can send it, so trusting it would let an attacker pick a fresh "IP" for every
attempt. Behind a reverse proxy, run uvicorn with --proxy-headers and
--forwarded-allow-ips set to the proxy's address: the client address is then the one the
proxy saw, and only that proxy's header is believed."""

from __future__ import annotations

import hashlib

from fastapi import status
from starlette.exceptions import HTTPException

from handwork_payments.auth import repository
from handwork_payments.db import transaction
from handwork_payments.kit.errors import ErrorBody
from handwork_payments.runtime import Runtime


class TooManyAttempts(HTTPException):
    """Too many attempts: try again after Retry-After seconds."""

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        # Rendered by the app's HTTPException handler, which keeps the headers.
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{detail}; try again in {retry_after_seconds} seconds",
            headers={"Retry-After": str(retry_after_seconds)},
        )


RESPONSES: dict[int | str, dict[str, object]] = {
    429: {
        "model": ErrorBody,
        "description": TooManyAttempts.__doc__,
        "headers": {
            "Retry-After": {
                "description": "seconds until the limit lets the caller try again",
                "schema": {"type": "integer"},
            }
        },
    }
}


def _bucket(kind: str, who: str) -> str:
    # Hashed: the table keeps no email or address, and any input fits the column.
    return f"{kind}:{hashlib.sha256(who.encode('utf-8', 'surrogatepass')).hexdigest()}"


async def _count(runtime: Runtime, bucket: str, limit: int, seconds: int, detail: str) -> None:
    async with transaction(runtime.sessions) as session:
        hits, left = await repository.hit(session, bucket, seconds)
    if hits > limit:
        raise TooManyAttempts(detail, max(left, 1))


async def count_login(runtime: Runtime, client_ip: str) -> None:
    limit = runtime.settings.login_max_attempts_per_ip_per_minute
    await _count(
        runtime, _bucket("login-ip", client_ip), limit, 60, "Too many logins from this address"
    )


async def count_registration(runtime: Runtime, client_ip: str) -> None:
    limit = runtime.settings.registrations_per_ip_per_hour
    detail = "Too many registrations from this address"
    await _count(runtime, _bucket("registration-ip", client_ip), limit, 3600, detail)


async def check_account(runtime: Runtime, email: str) -> None:
    """429 while the account has had too many failed logins in the current window, even
    with the right password (or guessing would go on, told apart by the answers)."""
    settings = runtime.settings
    async with runtime.sessions() as session:
        failures, left = await repository.peek(
            session, _bucket("login-account", email.lower()), settings.login_failure_window_seconds
        )
    if failures >= settings.login_max_failures_per_account:
        raise TooManyAttempts("Too many failed logins for this account", max(left, 1))


async def count_failure(runtime: Runtime, email: str) -> None:
    async with transaction(runtime.sessions) as session:
        await repository.hit(
            session,
            _bucket("login-account", email.lower()),
            runtime.settings.login_failure_window_seconds,
        )
