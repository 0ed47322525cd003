"""A token whose subject is not one of our ids is a 401 with a detail, never a query the
database refuses (a 503 before: `sub` 2**70 does not fit users.id)."""

from __future__ import annotations

from typing import Any

import jwt

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
