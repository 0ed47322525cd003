"""`crypto rotate`: two keys, rotate, drop the old one, every admin read still decrypts;
no plaintext metadata in a pg_dump before or after; admin reads audited."""

from __future__ import annotations

import asyncio

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import select

from handwork_payments.app import create_app
from handwork_payments.models import AuditLog
from handwork_payments.privacy.rotation import rotate
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import Api
from tests.privacy.test_erasure import _dump

SECRET = "plaintext-metadata-7f3a9c"


async def test_rotation_lets_the_old_key_go(api: Api, runtime: Runtime, database_url: str) -> None:
    old_key = runtime.settings.metadata_encryption_keys
    new_key = Fernet.generate_key().decode()
    admin = await api.admin()
    client, worker = await api.user("client"), await api.user("worker")
    ids = []
    for n in range(3):
        booking = await api.booking(client, worker)
        body = {
            "booking_id": booking["id"],
            "amount": "150.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
            "metadata": {"order": f"{SECRET}-{n}"},
        }
        # With an Idempotency-Key: its stored answer is encrypted with the same keys.
        r = await api.client.post(
            "/api/v1/payments/stripe/payment-intent",
            json=body,
            headers={**client.headers, "Idempotency-Key": f"rotate-{n}"},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    assert SECRET not in await asyncio.to_thread(_dump, database_url)

    both = Runtime.build(
        make_settings(database_url, metadata_encryption_keys=f"{new_key},{old_key}"),
        database_url,
    )
    try:
        assert await rotate(both, batch=2) == {
            "payments.payment_metadata": 3,
            "idempotency_records.response_ciphertext": 3,
        }
        assert await rotate(both, batch=2) == {  # resumes: nothing left on the old key
            "payments.payment_metadata": 0,
            "idempotency_records.response_ciphertext": 0,
        }
    finally:
        await both.aclose()
    assert SECRET not in await asyncio.to_thread(_dump, database_url)

    only_new = Runtime.build(
        make_settings(database_url, metadata_encryption_keys=new_key), database_url
    )
    try:
        transport = httpx.ASGITransport(app=create_app(only_new))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            listed = await http.get("/api/v1/payments/", headers=admin.headers)
            one = await http.get(f"/api/v1/payments/{ids[0]}", headers=admin.headers)
    finally:
        await only_new.aclose()
    assert listed.status_code == one.status_code == 200
    assert sorted(p["payment_metadata"]["order"] for p in listed.json()["items"]) == [
        f"{SECRET}-{n}" for n in range(3)
    ]
    assert one.json()["payment_metadata"] == {"order": f"{SECRET}-0"}

    async with runtime.sessions() as session:
        reads = (
            await session.execute(
                select(AuditLog.actor_id, AuditLog.object_id).where(
                    AuditLog.action == "payment.metadata_read"
                )
            )
        ).all()
    assert sorted(reads) == sorted([(admin.id, i) for i in ids] + [(admin.id, ids[0])])
