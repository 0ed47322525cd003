"""payment_metadata that no configured key opens (issue 9, medium 4): shown as null with
one alert, never a 500."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from handwork_payments.kit.crypto import MetadataCipher, UnreadableMetadata
from handwork_payments.models import Alert, Payment
from handwork_payments.runtime import Runtime
from tests.helpers import Api


def test_a_dropped_key_is_a_typed_error_and_rotation_still_reads() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    written = MetadataCipher(old).encrypt({"order": "A-1"})
    assert MetadataCipher(f"{new},{old}").decrypt(written) == {"order": "A-1"}
    with pytest.raises(UnreadableMetadata):
        MetadataCipher(new).decrypt(written)


async def test_unreadable_metadata_is_null_with_one_alert(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker)
    r = await api.post(
        "/payments/stripe/payment-intent",
        client,
        {
            "booking_id": booking["id"],
            "amount": "150.00",
            "currency": "USD",
            "payment_method": "pm_card_visa",
            "metadata": {"order": "A-1"},
        },
    )
    assert r.status_code == 201, r.text
    readable = r.json()["id"]
    _, _, other = await api.held_payment()
    lost = MetadataCipher(Fernet.generate_key().decode()).encrypt({"order": "B-2"})
    async with runtime.engine.begin() as conn:
        await conn.execute(
            update(Payment).where(Payment.id == other["id"]).values(payment_metadata=lost)
        )
    admin = await api.admin()
    for _ in range(2):
        page = await api.get("/payments/", admin)
        metadata = {p["id"]: p["payment_metadata"] for p in page["items"]}
        assert metadata == {readable: {"order": "A-1"}, other["id"]: None}
        one = await api.get(f"/payments/{other['id']}", admin)
        assert one["payment_metadata"] is None
    async with runtime.sessions() as session:
        alerts = (
            await session.scalars(select(Alert).where(Alert.kind == "metadata_unreadable"))
        ).all()
    # One alert, counting every unreadable read (2 pages + 2 single reads).
    assert [(a.object_type, a.object_id, a.count) for a in alerts] == [("payment", other["id"], 4)]
