"""Users and tokens: register, the OAuth2 password token, /auth/me, expiry, and the two
ways admins come to be (FIRST_ADMIN_* at start-up, `handwork-payments create-admin`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from handwork_payments import startup
from handwork_payments.auth import tokens
from handwork_payments.auth.service import ensure_admin
from handwork_payments.models import Role, User
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import PASSWORD, Api

REGISTER = "/api/v1/auth/register"
TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"


def new_user(address: str, role: str = "client", **changes: Any) -> dict[str, Any]:
    return {
        "email": address,
        "password": PASSWORD,
        "full_name": "Ann Smith",
        "role": role,
    } | changes


async def users(runtime: Runtime) -> list[tuple[str, Role]]:
    async with runtime.sessions() as session:
        rows = await session.execute(select(User.email, User.role).order_by(User.id))
        return [(email, role) for email, role in rows]


async def login(api: Api, email: str, password: str = PASSWORD) -> Any:
    return await api.client.post(TOKEN, data={"username": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- register ---------------------------------------------------------------------------
# (Variants are looped over inside a test rather than parametrised: each test begins by
# emptying the database, which costs more than the variants themselves.)


async def test_register_answers_the_user(api: Api, runtime: Runtime) -> None:
    for address, role in (("Ann@Example.com", "client"), ("BOB@example.COM", "worker")):
        r = await api.client.post(REGISTER, json=new_user(address, role, full_name=" Ann "))
        assert r.status_code == 201, r.text
        user = r.json()
        assert user == {"id": user["id"], "email": address.lower(), "full_name": "Ann",
                        "role": role, "status": "active"}  # fmt: skip
    assert await users(runtime) == [("ann@example.com", "client"), ("bob@example.com", "worker")]
    async with runtime.sessions() as session:
        hashes = list(await session.scalars(select(User.password_hash)))
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)


async def test_an_email_registers_once_whatever_its_case(api: Api, runtime: Runtime) -> None:
    first = await api.client.post(REGISTER, json=new_user("Ann@Example.com"))
    assert first.status_code == 201, first.text
    for again in ("ann@example.com", "ANN@EXAMPLE.COM", "Ann@example.Com"):
        r = await api.client.post(REGISTER, json=new_user(again, "worker", full_name="Other"))
        assert r.status_code == 409, (again, r.text)
        assert r.json() == {"detail": "A user with this email already exists"}
    assert await users(runtime) == [("ann@example.com", Role.CLIENT)]


async def test_registering_one_email_at_once_makes_one_user(api: Api, runtime: Runtime) -> None:
    emails = ["race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.com"]
    answers = await asyncio.gather(
        *(api.client.post(REGISTER, json=new_user(email)) for email in emails)
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
    assert await users(runtime) == [("race@example.com", Role.CLIENT)]


async def test_register_refuses_admins_and_weak_input(api: Api, runtime: Runtime) -> None:
    for changes in (
        {"role": "admin"},
        {"role": "ADMIN"},
        {"password": "short12"},  # 7 characters
        {"password": ""},
        {"email": "not an email"},
        {"full_name": " "},
    ):
        r = await api.client.post(REGISTER, json=new_user("eve@example.com", **changes))
        assert r.status_code == 422, (changes, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and next(iter(changes)) in detail, (changes, detail)
    assert await users(runtime) == []


async def test_eight_characters_are_enough(api: Api) -> None:
    r = await api.client.post(REGISTER, json=new_user("min@example.com", password="12345678"))
    assert r.status_code == 201, r.text
    assert (await login(api, "min@example.com", "12345678")).status_code == 200


# --- token and me -----------------------------------------------------------------------


async def test_a_token_for_the_password_names_the_user(api: Api, runtime: Runtime) -> None:
    user = (await api.client.post(REGISTER, json=new_user("ann@example.com", "worker"))).json()
    r = await login(api, "ANN@example.com")  # the email in any case
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type"} and body["token_type"] == "bearer"
    claims = jwt.decode(body["access_token"], runtime.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == str(user["id"])
    assert claims["exp"] - claims["iat"] == runtime.settings.jwt_expire_minutes * 60
    me = await api.client.get(ME, headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json() == user


async def test_a_wrong_password_and_an_unknown_email_look_alike(api: Api) -> None:
    await api.client.post(REGISTER, json=new_user("ann@example.com"))
    wrong = await login(api, "ann@example.com", "not the password")
    unknown = await login(api, "nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect email or password"}


async def test_the_token_form_is_required(api: Api) -> None:
    r = await api.client.post(TOKEN, json={"username": "ann@example.com", "password": PASSWORD})
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str)


async def test_an_expired_token_is_refused(api: Api, runtime: Runtime) -> None:
    user = (await api.client.post(REGISTER, json=new_user("ann@example.com"))).json()
    expired = tokens.issue(user["id"], runtime.jwt_secret, -1)  # expired a minute ago
    r = await api.client.get(ME, headers=bearer(expired))
    assert r.status_code == 401
    assert r.json() == {"detail": "Invalid or expired token"}
    fresh = tokens.issue(user["id"], runtime.jwt_secret, 1)
    assert (await api.client.get(ME, headers=bearer(fresh))).status_code == 200


async def test_me_needs_a_valid_bearer_token(api: Api, runtime: Runtime) -> None:
    user = (await api.client.post(REGISTER, json=new_user("ann@example.com"))).json()
    sub = str(user["id"])
    made = {
        "good": tokens.issue(user["id"], runtime.jwt_secret, 5),
        "other_secret": tokens.issue(user["id"], "not-the-secret-0123456789abcdef!", 5),
        "no_expiry": jwt.encode({"sub": sub}, runtime.jwt_secret, algorithm="HS256"),
        "no_subject": jwt.encode({"exp": 2**40}, runtime.jwt_secret, algorithm="HS256"),
        "none_alg": jwt.encode({"sub": sub, "exp": 2**40}, "", algorithm="none"),
    }
    for authorization in (
        None,
        "Bearer",
        "Bearer ",
        "Bearer not-a-jwt",
        "Basic YW5uOnB3",
        "Token {good}",
        "Bearer {other_secret}",
        "Bearer {no_expiry}",
        "Bearer {no_subject}",
        "Bearer {none_alg}",
    ):
        headers = {} if authorization is None else {"Authorization": authorization.format(**made)}
        r = await api.client.get(ME, headers=headers)
        assert r.status_code == 401, (authorization, r.text)
        assert r.json()["detail"] in ("Not authenticated", "Invalid or expired token")
    r = await api.client.get(ME, headers={"Authorization": "bearer " + made["good"]})
    assert r.status_code == 200, r.text  # the scheme in any case


# --- admins -----------------------------------------------------------------------------


async def test_ensure_admin_creates_once(api: Api, runtime: Runtime) -> None:
    made = [
        await ensure_admin(runtime, email="Boss@Example.com", password=PASSWORD, full_name="B")
        for _ in range(3)
    ]
    assert made == [True, False, False]
    assert await users(runtime) == [("boss@example.com", Role.ADMIN)]
    r = await login(api, "boss@example.com")
    assert r.status_code == 200, r.text
    me = await api.client.get(ME, headers=bearer(r.json()["access_token"]))
    assert me.json()["role"] == "admin"


async def test_ensure_admin_never_promotes_an_existing_user(api: Api, runtime: Runtime) -> None:
    await api.client.post(REGISTER, json=new_user("boss@example.com"))
    assert not await ensure_admin(
        runtime, email="BOSS@example.com", password="another password", full_name="B"
    )
    assert await users(runtime) == [("boss@example.com", Role.CLIENT)]
    assert (await login(api, "boss@example.com", "another password")).status_code == 401


async def test_first_admin_is_created_at_start_up_once(
    api: Api, runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        database_url, first_admin_email="first@example.com", first_admin_password=PASSWORD
    )
    monkeypatch.setattr(startup, "get_settings", lambda: settings)
    monkeypatch.setattr(startup, "run_in_process_worker", False)
    for _ in range(2):  # two starts, or two processes
        async with startup.started_runtime():
            pass
    assert await users(runtime) == [("first@example.com", Role.ADMIN)]
    assert (await login(api, "first@example.com")).status_code == 200


def run_cli(database_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "PAYPAL_", "FIRST_ADMIN_", "DATABASE_URL"))
    }
    env |= {
        "DATABASE_URL": database_url,
        "JWT_SECRET": "cli-test-secret-0123456789abcdef",
        "PASSWORD_HASH_TIME_COST": "1",
        "PASSWORD_HASH_MEMORY_KIB": "1024",
    }
    cli = Path(sys.executable).parent / "handwork-payments"
    return subprocess.run(
        [str(cli), "create-admin", *args],
        env=env,
        cwd=cwd,  # no .env of the repository's
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_create_admin_command(
    api: Api, runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, tmp_path, *args)

    args = ("--email", "Ops@Example.com", "--password", PASSWORD, "--full-name", "Ops")
    first = await asyncio.to_thread(run, *args)
    assert first.returncode == 0, first.stderr
    assert "admin Ops@Example.com created" in first.stdout
    assert "Password" not in first.stdout + first.stderr  # never prompted
    again = await asyncio.to_thread(run, *args)
    assert again.returncode == 0, again.stderr
    assert "exists already" in again.stdout

    short = await asyncio.to_thread(run, "--email", "x@example.com", "--password", "short")
    assert short.returncode == 2
    assert "at least 8 characters" in short.stderr

    assert await users(runtime) == [("ops@example.com", Role.ADMIN)]
    r = await login(api, "ops@example.com")
    assert r.status_code == 200, r.text
    me = await api.client.get(ME, headers=bearer(r.json()["access_token"]))
    assert me.json() == {"id": me.json()["id"], "email": "ops@example.com", "full_name": "Ops",
                         "role": "admin", "status": "active"}  # fmt: skip
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
