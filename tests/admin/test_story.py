"""A payment's story for admins: every state change, journal entry, provider id and event."""

from __future__ import annotations

from sqlalchemy import text

from handwork_payments.admin.story import events_query
from handwork_payments.runtime import Runtime
from tests.helpers import Api


async def test_the_story_of_a_refunded_then_released_payment(api: Api, runtime: Runtime) -> None:
    client, worker, paid = await api.held_payment("100.00")
    r = await api.post(
        "/payments/refund", worker, {"payment_id": paid["id"], "amount": "10.00", "reason": "Oops"}
    )
    assert r.status_code == 200, r.text
    assert (await api.post(f"/payments/{paid['id']}/release", client)).status_code == 200
    admin = await api.admin()

    story = await api.get(f"/admin/payments/{paid['id']}/story", admin)

    assert story["payment"]["status"] == "released"
    assert story["provider"]["stripe_payment_id"] == paid["stripe_payment_id"]
    assert story["provider"]["hold_kind"] == "captured"
    assert story["booking"]["worker_id"] == worker.id
    assert [(r["amount"], r["fee_part"], r["status"]) for r in story["refunds"]] == [
        ("10.00", "0.50", "succeeded")
    ]
    assert [e["kind"] for e in story["journal"]] == [
        "payment_hold",
        "payment_refund",
        "provider_fee",  # the simulator's 2.9% + 0.30 of the 90.00 captured: 2.91
        "payment_release",
    ]
    for entry in story["journal"]:
        assert sum(float(p["amount"]) for p in entry["postings"]) == 0
    assert sorted(p["amount"] for p in story["journal"][2]["postings"]) == ["-2.91", "2.91"]
    release = story["journal"][3]
    assert sorted(p["amount"] for p in release["postings"]) == ["-90.00", "4.50", "85.50"]
    assert [a["action"] for a in story["audit"]] == [
        "payment.created",
        "payment.held",
        "payment.refunded",
        "payment.released",
    ]
    assert [e["type"] for e in story["events"]] == [
        "payment.held",
        "payment.refunded",
        "payment.released",
    ]
    r = await api.client.get("/api/v1/admin/payments/999999/story", headers=admin.headers)
    assert r.status_code == 404
    r = await api.client.get(f"/api/v1/admin/payments/{paid['id']}/story", headers=client.headers)
    assert r.status_code == 403


async def test_the_story_finds_a_payments_events_by_its_index(runtime: Runtime) -> None:
    """The look-up once read every marketplace event ever sent (`data->>'id'` had no
    index); with 20,000 events of other payments, migration 0018's partial index answers
    it (the query is spelled to match the indexed expression)."""
    async with runtime.sessions() as session:
        await session.execute(
            text(
                "INSERT INTO marketplace_events (public_id, type, data, status, attempts, "
                "created_at) SELECT 'evt_' || n, 'payment.held', jsonb_build_object('id', n), "
                "'delivered', 0, now() FROM generate_series(1, 20000) AS n"
            )
        )
        await session.execute(text("ANALYZE marketplace_events"))
        compiled = events_query(7).compile(session.bind, compile_kwargs={"literal_binds": True})
        connection = await session.connection()
        explain = await connection.exec_driver_sql(f"EXPLAIN {compiled}")
        plan = [row[0] for row in explain]
        await session.rollback()
    assert any("ix_marketplace_events_payment_id" in line for line in plan), plan
