"""A token whose subject is not one of our ids is a 401 with a detail, never a query the
database refuses (a 503 before: `sub` 2**70 does not fit users.id)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from sqlalchemy import text

from handwork_payments.auth import tokens
from handwork_payments.runtime import Runtime
from tests.helpers import Api


async def test_a_subject_that_is_no_user_id_is_a_401(api: Api, runtime: Runtime) -> None:
    ann = await api.user("client")
    subjects: list[Any] = [
        str(2**70), str(2**63), "-1", "0", "+1", " 1", "1.0", "1e3", "abc", "", "\u0661",
        2**70, ann.id, [str(ann.id)], None,
    ]  # fmt: skip
    for sub in subjects:
        token = jwt.encode({"sub": sub, "exp": 2**40}, runtime.jwt_secret, algorithm="HS256")
        r = await api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (sub, r.text)
        assert r.json() == {"detail": "Invalid or expired token"}, sub
    largest = tokens.issue(2**63 - 1, runtime.jwt_secret, 5)
    assert tokens.subject(largest, runtime.jwt_secret) == 2**63 - 1
    r = await api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {largest}"})
    assert r.status_code == 401, r.text


async def test_a_remembered_token_is_refused_once_it_expires(
    api: Api, runtime: Runtime, monkeypatch: Any
) -> None:
    ann = await api.user("client")
    token = tokens.issue(ann.id, runtime.jwt_secret, 1)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    assert tokens.subject(token, runtime.jwt_secret) == ann.id  # remembered now
    later = time.time() + 61
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    r = await api.client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid or expired token"}
    # Under another secret the token was never verified: refused, not remembered.
    assert tokens.subject(token, "another-secret-0123456789abcdef0123") is None


async def test_a_suspended_user_s_remembered_token_is_refused(api: Api, runtime: Runtime) -> None:
    ann = await api.user("client")
    headers = ann.headers
    assert (await api.client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE users SET status = 'suspended' WHERE id = :id"), {"id": ann.id}
        )
    r = await api.client.get("/api/v1/auth/me", headers=headers)
    assert r.status_code == 401, r.text
