"""The Idempotency-Key cache keeps no secrets (issue 9, High 2): credentials routes and
anonymous callers are never stored, the request hash is keyed, the stored answers are
encrypted, records expire and are purged, and a request that died in flight is taken
over. The proof at the end: every POST of the API sent with keys, then a pg_dump of the
whole database holds no issued token, no password and no metadata value."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from typing import Any

import httpx
from sqlalchemy import func, select, text, update

from handwork_payments.db import libpq_url
from handwork_payments.http import tasks
from handwork_payments.models import IdempotencyRecord, WorkerPayout
from handwork_payments.runtime import Runtime
from tests.helpers import PASSWORD, Api, Party

_keys = itertools.count(1)
METADATA_SECRET = "meta-7f3a9c-plaintext-marker"


def key() -> str:
    return f"key-{next(_keys)}"


async def records(runtime: Runtime) -> list[IdempotencyRecord]:
    async with runtime.sessions() as session:
        return list((await session.scalars(select(IdempotencyRecord))).all())


async def keyed_post(
    api: Api, path: str, party: Party | None, body: Any = None, **kwargs: Any
) -> httpx.Response:
    """POST with a fresh key, then again with the same key: the second must be the
    first's answer (replayed when the caller is authenticated)."""
    headers = {**(party.headers if party else {}), "Idempotency-Key": key()}
    first = await api.client.post(f"/api/v1{path}", json=body, headers=headers, **kwargs)
    if party is not None and first.status_code < 500:
        again = await api.client.post(f"/api/v1{path}", json=body, headers=headers, **kwargs)
        assert again.headers.get("idempotent-replayed") == "true", (path, again.text)
        assert (again.status_code, again.json()) == (first.status_code, first.json())
    return first


async def pg_dump(database_url: str) -> str:
    """The whole database's data as SQL (`pg_dump --data-only`)."""
    process = await asyncio.create_subprocess_exec(
        "pg_dump",
        "--data-only",
        libpq_url(database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_auth_routes_and_anonymous_callers_are_never_stored(
    api: Api, runtime: Runtime
) -> None:
    worker = await api.user("worker")
    register = {
        "email": "new@example.com",
        "password": PASSWORD,
        "full_name": "N",
        "role": "client",
    }
    # Even with a valid bearer token, /auth/* is executed and not kept: the second
    # registration is a conflict, not a replay of the first.
    headers = {**worker.headers, "Idempotency-Key": "reg"}
    first = await api.client.post("/api/v1/auth/register", json=register, headers=headers)
    again = await api.client.post("/api/v1/auth/register", json=register, headers=headers)
    assert (first.status_code, again.status_code) == (201, 409)
    login = {"username": "new@example.com", "password": PASSWORD}
    for _ in range(2):
        r = await api.client.post("/api/v1/auth/token", data=login, headers=headers)
        assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    # An anonymous caller's key is ignored: the request runs (here, to its 401) each time.
    anonymous = {"Idempotency-Key": "anon"}
    for _ in range(2):
        r = await api.client.post("/api/v1/bookings", json={}, headers=anonymous)
        assert r.status_code == 401 and "idempotent-replayed" not in r.headers
    # An invalid key is not even looked at for them.
    r = await api.client.post("/api/v1/bookings", json={}, headers={"Idempotency-Key": ""})
    assert r.status_code == 401, r.text
    assert await records(runtime) == []


async def test_the_request_hash_is_keyed_and_the_answer_encrypted(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker, "20.00")
    body = (
        f'{{"booking_id": {booking["id"]}, "amount": "20.00", "currency": "USD", '
        f'"payment_method": "pm_card_visa", "metadata": {{"order": "{METADATA_SECRET}"}}}}'
    ).encode()
    path = "/api/v1/payments/stripe/payment-intent"
    headers = {**client.headers, "Idempotency-Key": "k", "Content-Type": "application/json"}
    r = await api.client.post(path, content=body, headers=headers)
    assert r.status_code == 201, r.text
    (record,) = await records(runtime)
    assert record.scope == f"user:{client.id}"
    unkeyed = hashlib.sha256(b"\0".join([b"POST", path.encode(), b"", body])).hexdigest()
    assert record.request_hash != unkeyed
    assert record.response_ciphertext is not None
    assert METADATA_SECRET.encode() not in record.response_ciphertext
    assert runtime.cipher.decrypt(record.response_ciphertext) == {"body": r.text}
    async with runtime.sessions() as session:
        ttl = await session.scalar(
            select(IdempotencyRecord.expires_at - IdempotencyRecord.created_at)
        )
    assert ttl is not None and ttl.total_seconds() == 24 * 3600


async def payout_request(api: Api, runtime: Runtime) -> tuple[Party, dict[str, Any]]:
    client, worker, payment = await api.held_payment("100.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": f"acct_1Secret{worker.id}"},
        headers=worker.headers,
    )
    assert r.status_code == 200, r.text
    return worker, {"amount": "10.00", "payment_method": "stripe"}


async def test_expired_records_are_purged_and_not_replayed(api: Api, runtime: Runtime) -> None:
    worker, body = await payout_request(api, runtime)
    url = "/api/v1/payments/payouts/request"
    headers = {**worker.headers, "Idempotency-Key": "old"}
    first = await api.client.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord).values(expires_at=func.now() - text("interval '1 second'"))
        )
    # Expired but not purged yet: the key is free again, the request acts.
    again = await api.client.post(url, json=body, headers=headers)
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    (record,) = await records(runtime)
    assert (record.expires_at - record.created_at).total_seconds() == 24 * 3600
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord).values(expires_at=func.now() - text("interval '1 second'"))
        )
    assert await tasks.purge(runtime) == (1, 0)
    assert await records(runtime) == []


async def test_a_request_that_died_in_flight_is_taken_over(api: Api, runtime: Runtime) -> None:
    worker, body = await payout_request(api, runtime)
    url = "/api/v1/payments/payouts/request"
    headers = {**worker.headers, "Idempotency-Key": "crashed"}
    r = await api.client.post(url, json=body, headers=headers)
    assert r.status_code == 201, r.text
    # As if the process had died before the answer was stored: no answer, started long ago.
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord).values(
                status_code=None,
                response_ciphertext=None,
                started_at=func.now() - text("interval '1 minute'"),
            )
        )
    r = await api.client.post(url, json=body, headers=headers)
    assert r.status_code == 409, r.text  # within the timeout it may still be running
    async with runtime.sessions() as session, session.begin():
        await session.execute(
            update(IdempotencyRecord).values(started_at=func.now() - text("interval '3 minutes'"))
        )
    # Another body under the key is still another request.
    other = {**body, "amount": "11.00"}
    r = await api.client.post(url, json=other, headers=headers)
    assert r.status_code == 422, r.text
    taken = await api.client.post(url, json=body, headers=headers)
    assert taken.status_code == 201 and "idempotent-replayed" not in taken.headers
    replay = await api.client.post(url, json=body, headers=headers)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == taken.json()
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WorkerPayout)) == 2


async def test_a_dump_of_the_database_after_every_post_holds_no_secret(
    api: Api, runtime: Runtime, database_url: str
) -> None:
    tokens: list[str] = []

    async def party(role: str) -> Party:
        email = f"dump-{role}@example.com"
        r = await keyed_post(
            api,
            "/auth/register",
            None,
            {"email": email, "password": PASSWORD, "full_name": role, "role": role},
        )
        assert r.status_code == 201, r.text
        r = await keyed_post(
            api, "/auth/token", None, data={"username": email, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        tokens.append(r.json()["access_token"])
        return Party(0, email, {"Authorization": f"Bearer {tokens[-1]}"})

    client, worker = await party("client"), await party("worker")
    worker.id = (await api.get("/auth/me", worker))["id"]
    admin = await api.admin()
    tokens.append(admin.headers["Authorization"].removeprefix("Bearer "))
    metadata = {"order": METADATA_SECRET}

    async def booking(amount: str) -> dict[str, Any]:
        r = await keyed_post(
            api,
            "/bookings",
            client,
            {"worker_id": worker.id, "title": "Fix", "amount": amount, "currency": "USD"},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def stripe_paid(amount: str) -> dict[str, Any]:
        b = await booking(amount)
        r = await keyed_post(
            api,
            "/payments/stripe/payment-intent",
            client,
            {"booking_id": b["id"], "amount": amount, "currency": "USD",
             "payment_method": "pm_card_visa", "metadata": metadata},
        )  # fmt: skip
        assert r.status_code == 201 and r.json()["status"] == "held", r.text
        return dict(r.json())

    released = await stripe_paid("100.00")
    r = await keyed_post(api, f"/payments/{released['id']}/release", client)
    assert r.status_code == 200, r.text

    refunded = await stripe_paid("50.00")
    r = await keyed_post(
        api,
        "/payments/refund",
        admin,
        {"payment_id": refunded["id"], "amount": "5.00", "reason": "Less work"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["payment_metadata"] == metadata  # the admin sees it decrypted

    b = await booking("60.00")
    r = await keyed_post(
        api,
        "/payments/paypal/create",
        client,
        {"booking_id": b["id"], "amount": "60.00", "currency": "USD", "metadata": metadata,
         "return_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    approval = await api.client.get(r.json()["approval_url"])
    assert approval.status_code == 200, approval.text
    r = await keyed_post(
        api,
        "/payments/paypal/execute",
        client,
        {"payment_id": r.json()["paypal_payment_id"], "payer_id": approval.json()["payer_id"],
         "booking_id": b["id"]},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "held", r.text
    r = await keyed_post(
        api,
        "/payments/disputes",
        client,
        {"payment_id": r.json()["id"], "reason": "Not done", "description": "Half"},
    )
    assert r.status_code == 201, r.text
    r = await keyed_post(
        api,
        f"/payments/disputes/{r.json()['id']}/resolve",
        admin,
        {"outcome": "release", "resolution_notes": "Done after all"},
    )
    assert r.status_code == 200, r.text

    headers = {**worker.headers, "Idempotency-Key": key()}
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": "acct_1Dump", "paypal_email": "w@example.com"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = await keyed_post(
        api, "/payments/payouts/request", worker, {"amount": "20.00", "payment_method": "stripe"}
    )
    assert r.status_code == 201, r.text
    r = await keyed_post(api, f"/payments/payouts/{r.json()['id']}/process", admin)
    assert r.status_code == 200, r.text
    assert len(await records(runtime)) >= 10

    dump = await pg_dump(database_url)
    assert "idempotency_records" in dump and "acct_1Dump" in dump  # the dump has the data
    for token in tokens:
        assert token not in dump
        assert token.split(".")[2] not in dump  # nor its signature alone
    assert PASSWORD not in dump
    assert METADATA_SECRET not in dump
