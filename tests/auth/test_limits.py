"""Logins that cannot stall the server or be guessed at speed (issue 9, High 1): argon2
runs off the event loop, and logins per account and per client address, and
registrations per address, are limited with counters in PostgreSQL (429 + Retry-After)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select, text

from handwork_payments.app import create_app
from handwork_payments.http import tasks
from handwork_payments.models import RateLimitCounter, User
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import PASSWORD, Api

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post(TOKEN, data={"username": email, "password": password})


def assert_too_many(r: httpx.Response, detail: str, window_seconds: int) -> None:
    assert r.status_code == 429, r.text
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= window_seconds
    assert r.json() == {"detail": f"{detail}; try again in {retry_after} seconds"}


async def end_windows(runtime: Runtime) -> None:
    """As if every window had ended: the counters are moved an hour into the past."""
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE rate_limit_counters SET window_start = window_start - interval '1 hour',"
                " window_end = window_end - interval '1 hour'"
            )
        )


async def test_ten_wrong_passwords_lock_the_account_until_the_window_ends(
    api: Api, runtime: Runtime
) -> None:
    ann = await api.user("client")
    answers = [await login(api.client, ann.email, "wrong password") for _ in range(10)]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 5
    for r in answers[5:]:
        assert_too_many(r, "Too many failed logins for this account", 900)
    # The right password is refused too while the account is locked, or guessing would
    # go on, told apart by the answers; other accounts are not affected.
    assert_too_many(
        await login(api.client, ann.email), "Too many failed logins for this account", 900
    )
    assert_too_many(
        await login(api.client, ann.email.upper()), "Too many failed logins for this account", 900
    )
    other = await api.user("worker")
    assert (await login(api.client, other.email)).status_code == 200
    await end_windows(runtime)
    assert (await login(api.client, ann.email)).status_code == 200


async def test_unknown_emails_are_locked_alike(api: Api) -> None:
    answers = [await login(api.client, "nobody@example.com", "guess") for _ in range(6)]
    assert [r.status_code for r in answers] == [401] * 5 + [429]


async def test_logins_per_address_are_limited(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "login_max_attempts_per_ip_per_minute", 3)
    ann = await api.user("client")  # logs in once
    answers = [await login(api.client, ann.email) for _ in range(2)]
    assert [r.status_code for r in answers] == [200] * 2
    # Any account, right password or not: the address has had its attempts this minute.
    for email in (ann.email, "other@example.com"):
        assert_too_many(await login(api.client, email), "Too many logins from this address", 60)
    # Another address is counted apart.
    transport = httpx.ASGITransport(app=create_app(runtime), client=("203.0.113.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as elsewhere:
        assert (await login(elsewhere, ann.email)).status_code == 200
    await end_windows(runtime)
    assert (await login(api.client, ann.email)).status_code == 200


async def test_registrations_per_address_are_limited(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "registrations_per_ip_per_hour", 2)

    def new(n: int) -> dict[str, str]:
        return {"email": f"u{n}@example.com", "password": PASSWORD, "full_name": "U",
                "role": "client"}  # fmt: skip

    assert [(await api.client.post(REGISTER, json=new(n))).status_code for n in (1, 2)] == [201] * 2
    r = await api.client.post(REGISTER, json=new(3))
    assert_too_many(r, "Too many registrations from this address", 3600)
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 2
    await end_windows(runtime)
    assert (await api.client.post(REGISTER, json=new(3))).status_code == 201


async def test_counters_keep_no_email_or_address_and_ended_windows_are_purged(
    api: Api, runtime: Runtime
) -> None:
    await login(api.client, "ann@example.com", "wrong")
    async with runtime.sessions() as session:
        buckets = sorted(await session.scalars(select(RateLimitCounter.bucket)))
    assert [b.split(":")[0] for b in buckets] == ["login-account", "login-ip"]
    assert not any("ann" in b or "127.0.0.1" in b for b in buckets)
    assert await tasks.purge(runtime) == (0, 0)  # windows still running are kept
    await end_windows(runtime)
    assert await tasks.purge(runtime) == (0, 2)


@pytest.fixture
async def costly_hashing(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose argon2 has the production cost (time 3, 64 MiB): the cost at which
    hashing on the event loop stalled every other request. As many hashing threads as
    CPUs (the default)."""
    settings = make_settings(
        database_url, password_hash_time_cost=3, password_hash_memory_kib=65536
    )
    built = Runtime.build(settings, database_url)
    transport = httpx.ASGITransport(app=create_app(built))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    finally:
        await built.aclose()


async def test_sixteen_logins_at_once_leave_health_answering(
    costly_hashing: httpx.AsyncClient, runtime: Runtime
) -> None:
    http = costly_hashing
    new = {"email": "ann@example.com", "password": PASSWORD, "full_name": "A", "role": "client"}
    assert (await http.post(REGISTER, json=new)).status_code == 201
    logins = asyncio.gather(*(login(http, new["email"]) for _ in range(16)))
    latencies: list[float] = []
    await asyncio.sleep(0)  # the logins have started
    while not logins.done() or len(latencies) < 5:
        started = time.perf_counter()
        assert (await http.get("/health")).status_code == 200
        latencies.append(time.perf_counter() - started)
    answers = await logins
    assert [r.status_code for r in answers] == [200] * 16
    p50 = statistics.median(latencies)
    print(f"/health during 16 logins: p50 {p50 * 1000:.1f} ms over {len(latencies)} requests")
    assert p50 < 0.050, latencies
