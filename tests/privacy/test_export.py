"""GET /auth/me/export: exactly the caller's data, as a download."""

from __future__ import annotations

from handwork_payments.runtime import Runtime
from tests.helpers import Api


async def test_the_export_holds_exactly_the_callers_data(api: Api, runtime: Runtime) -> None:
    client, worker, payment = await api.held_payment()
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    # Someone else's business, which must not appear.
    other_client, other_worker, other_payment = await api.held_payment("20.00")
    r = await api.post(
        "/payments/disputes",
        other_client,
        {"payment_id": other_payment["id"], "reason": "Late", "description": "No show"},
    )
    assert r.status_code == 201, r.text

    r = await api.client.get("/api/v1/auth/me/export", headers=worker.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == (
        f'attachment; filename="handwork-export-user-{worker.id}.json"'
    )
    document = r.json()
    assert document["profile"]["id"] == worker.id
    assert document["profile"]["email"] == worker.email
    assert [b["id"] for b in document["bookings"]] == [payment["booking_id"]]
    assert [(p["id"], p["amount"], p["status"]) for p in document["payments"]] == [
        (payment["id"], "150.00", "released")
    ]
    assert all(p["payment_metadata"] is None for p in document["payments"])
    assert document["disputes"] == [] and document["payouts"] == []
    assert [(t["transaction_type"], t["amount"]) for t in document["transactions"]] == [
        ("earning", "142.50")
    ]
    actions = [(e["action"], e["object_id"]) for e in document["audit_entries"]]
    assert ("user.registered", worker.id) in actions and ("auth.login", worker.id) in actions
    assert {e["subject_id"] for e in document["audit_entries"]} <= {worker.id, None}
    assert other_worker.id not in {e["object_id"] for e in document["audit_entries"]}

    theirs = (await api.client.get("/api/v1/auth/me/export", headers=other_client.headers)).json()
    assert [d["payment_id"] for d in theirs["disputes"]] == [other_payment["id"]]
    assert [p["id"] for p in theirs["payments"]] == [other_payment["id"]]
    assert (await api.client.get("/api/v1/auth/me/export")).status_code == 401
    del runtime
