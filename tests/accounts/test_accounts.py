"""Admins' accounts: list, suspend (at once, on every process), reactivate; logins audited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from handwork_payments.models import AuditLog
from handwork_payments.runtime import Runtime
from tests.helpers import PASSWORD, Api
from tests.test_processes import START_TIMEOUT_SECONDS, Process, environment, free_port


async def _entries(runtime: Runtime, action: str) -> list[AuditLog]:
    async with runtime.sessions() as session:
        found = await session.scalars(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        )
        return list(found.all())


async def test_admins_list_users_by_role_and_text(api: Api) -> None:
    admin = await api.admin()
    client, worker = await api.user("client"), await api.user("worker")
    listed = await api.get("/admin/users", admin, role="worker")
    assert [u["id"] for u in listed["items"]] == [worker.id]
    assert listed["items"][0] | {"created_at": None} == {
        "id": worker.id,
        "email": worker.email,
        "full_name": "Worker",
        "role": "worker",
        "status": "active",
        "created_at": None,
    }
    found = await api.get("/admin/users", admin, q=client.email[:7].upper())
    assert [u["id"] for u in found["items"]] == [client.id]
    assert (await api.get("/admin/users", admin, q="%"))["total"] == 0


async def test_suspension_refuses_tokens_and_logins_and_moves_no_money(
    api: Api, runtime: Runtime
) -> None:
    admin = await api.admin()
    client, worker, payment = await api.held_payment()
    r = await api.post(f"/admin/users/{client.id}/suspend", admin, {"reason": "Chargeback fraud"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "suspended"

    refused = await api.client.get("/api/v1/auth/me", headers=client.headers)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "This account is suspended"}
    login = await api.client.post(
        "/api/v1/auth/token", data={"username": client.email, "password": PASSWORD}
    )
    assert (login.status_code, login.json()) == (401, {"detail": "This account is suspended"})
    # The money stays in escrow; admins still act on it.
    assert (await api.get(f"/payments/{payment['id']}", admin))["status"] == "held"
    r = await api.post("/payments/refund", admin, {"payment_id": payment["id"], "reason": "Fraud"})
    assert r.status_code == 200 and r.json()["status"] == "refunded", r.text

    suspended = await _entries(runtime, "user.suspended")
    assert [(e.actor_id, e.object_id, e.personal["details"]) for e in suspended] == [
        (admin.id, client.id, {"reason": "Chargeback fraud"})
    ]
    assert [e.object_id for e in await _entries(runtime, "auth.token_refused")] == [client.id]
    assert [e.object_id for e in await _entries(runtime, "auth.login_refused")] == [client.id]

    r = await api.post(f"/admin/users/{client.id}/reactivate", admin)
    assert (r.status_code, r.json()["status"]) == (200, "active")
    assert (await api.client.get("/api/v1/auth/me", headers=client.headers)).status_code == 200
    del worker


async def test_an_admin_cannot_suspend_itself_and_unknown_users_are_404(api: Api) -> None:
    admin = await api.admin()
    r = await api.post(f"/admin/users/{admin.id}/suspend", admin, {"reason": "x"})
    assert (r.status_code, r.json()) == (409, {"detail": "An admin cannot suspend itself"})
    r = await api.post("/admin/users/999999/suspend", admin, {"reason": "x"})
    assert (r.status_code, r.json()) == (404, {"detail": "User not found"})


async def test_logins_are_audited_with_the_client_address(api: Api, runtime: Runtime) -> None:
    client = await api.user("client")
    bad = await api.client.post(
        "/api/v1/auth/token", data={"username": client.email, "password": "wrong password"}
    )
    unknown = await api.client.post(
        "/api/v1/auth/token", data={"username": "nobody@example.com", "password": "x" * 8}
    )
    assert bad.status_code == unknown.status_code == 401
    ok = [(e.object_id, e.personal["details"]) for e in await _entries(runtime, "auth.login")]
    # httpx's ASGITransport reports the client as 127.0.0.1.
    assert ok == [(client.id, {"client_ip": "127.0.0.1"})]
    failed = [
        (e.object_id, e.subject_id, e.personal["details"])
        for e in await _entries(runtime, "auth.login_failed")
    ]
    assert failed == [
        (client.id, client.id, {"client_ip": "127.0.0.1"}),
        (0, None, {"client_ip": "127.0.0.1", "email": "nobody@example.com"}),
    ]


@pytest.fixture
def second_process(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another API process on the same database (`serve --no-worker`)."""
    port = free_port()
    process = Process(
        "api2",
        ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        tmp_path,
        environment(database_url),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import time

        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.popen.poll() is None, process.output()[-3000:]
            assert time.monotonic() < deadline, "the second process did not start"
            time.sleep(0.1)
        yield base
    finally:
        process.kill()


async def test_suspension_takes_effect_at_once_in_another_process(
    api: Api, second_process: str
) -> None:
    admin = await api.admin()
    worker = await api.user("worker")  # its token was issued before the suspension
    async with httpx.AsyncClient(base_url=second_process, timeout=30) as other:
        before = await other.get("/api/v1/auth/me", headers=worker.headers)
        assert before.status_code == 200, before.text
        r = await api.post(f"/admin/users/{worker.id}/suspend", admin, {"reason": "Review"})
        assert r.status_code == 200, r.text
        after = await other.get("/api/v1/payments/earnings/worker", headers=worker.headers)
        assert (after.status_code, after.json()) == (
            401,
            {"detail": "This account is suspended"},
        )
    await asyncio.sleep(0)
