"""SPEC.md's dispute flows end to end over HTTP, on the built-in simulators, with exact
amounts. The ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from tests.helpers import Api
from tests.payments.flows import payment_of


async def test_dispute_freezes_funds_and_a_split_resolves_it(api: Api) -> None:
    client, pro, payment = await api.held_payment("150.00")
    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": payment["id"], "reason": "Work not completed", "description": "Half done"},
    )
    assert r.status_code == 201, r.text
    dispute = r.json()
    assert dispute["status"] == "open" and dispute["initiated_by"] == client.id
    assert (await payment_of(api, client, payment["id"]))["status"] == "disputed"

    assert (await api.post(f"/payments/{payment['id']}/release", client)).status_code == 409
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 409
    r = await api.post(f"/payments/disputes/{dispute['id']}/review", client)
    assert r.status_code == 403

    admin = await api.admin()
    r = await api.post(f"/payments/disputes/{dispute['id']}/review", admin)
    assert r.status_code == 200 and r.json()["status"] == "under_review"
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "60.00", "resolution_notes": "Half the job"},
    )
    assert r.status_code == 200, r.text
    resolved = r.json()
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == admin.id
    final = await payment_of(api, client, payment["id"])
    assert final["status"] == "released" and final["refunded_amount"] == "60.00"
    # 90.00 released: fee 7.50 - 3.00 = 4.50, worker 142.50 - 57.00 = 85.50.
    assert (await api.earnings(pro))["available_balance"] == "85.50"
    fees = [t["amount"] for t in (await api.get("/payments/transactions", admin))["items"]]
    assert fees == ["4.50"]
    alerts = [a["kind"] for a in (await api.get("/admin/alerts", admin))["items"]]
    assert alerts == ["dispute_opened"]
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "60.00", "resolution_notes": "again"},
    )
    assert r.status_code == 409
    assert (await api.get("/payments/disputes", pro))["total"] == 1


async def test_dispute_resolved_by_full_refund_or_release(api: Api) -> None:
    admin = await api.admin()
    for outcome, status, available in (
        ("refund", "refunded", "0.00"),
        ("release", "released", "142.50"),
    ):
        client, pro, payment = await api.held_payment("150.00")
        dispute = (
            await api.post(
                "/payments/disputes",
                pro,
                {"payment_id": payment["id"], "reason": "Client unreachable", "description": "-"},
            )
        ).json()
        r = await api.post(
            f"/payments/disputes/{dispute['id']}/resolve",
            admin,
            {"outcome": outcome, "resolution_notes": "decided"},
        )
        assert r.status_code == 200, r.text
        assert (await payment_of(api, client, payment["id"]))["status"] == status
        assert (await api.earnings(pro))["available_balance"] == available
