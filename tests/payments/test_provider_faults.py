"""Provider calls whose answer never comes: the payment keeps its in-flight marker and the
next attempt repeats the same call with the same idempotency key, so nothing happens twice."""

from __future__ import annotations

from typing import Any

from handwork_payments.models import Payment
from handwork_payments.payments.refunds import finish_refund
from handwork_payments.providers.base import HoldRef
from handwork_payments.providers.simulated import SimulatedProvider
from handwork_payments.runtime import Runtime
from tests.helpers import Api


def simulator(runtime: Runtime, name: str = "stripe") -> SimulatedProvider:
    provider = runtime.providers.for_method(name)
    assert isinstance(provider, SimulatedProvider)
    return provider


async def row(runtime: Runtime, payment_id: int) -> Payment:
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment


async def test_a_lost_hold_answer_is_resumed_by_retrying(api: Api, runtime: Runtime) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "25.00")
    await simulator(runtime).inject_fault("create_hold", "timeout_after_success")
    r = await api.stripe_payment(client, booking)
    assert r.status_code == 502, r.text
    pending: list[dict[str, Any]] = (await api.get("/payments/", client))["items"]
    assert [p["status"] for p in pending] == ["pending"]

    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201, r.text
    held = r.json()
    assert held["id"] == pending[0]["id"] and held["status"] == "held"
    hold = await simulator(runtime).get_hold(HoldRef(held["stripe_payment_id"]))
    assert hold.amount == 2500


async def test_a_lost_capture_answer_captures_once(api: Api, runtime: Runtime) -> None:
    client, pro, payment = await api.held_payment("40.00")
    await simulator(runtime).inject_fault("capture", "timeout_after_success")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 502
    stuck = await row(runtime, payment["id"])
    assert stuck.status == "held" and stuck.provider_operation == "capture"
    # Any other move waits for the capture's outcome.
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "x"})
    assert r.status_code == 409

    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released"
    hold = await simulator(runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.captured_amount == 4000
    assert (await api.earnings(pro))["available_balance"] == "38.00"


async def test_a_refused_capture_leaves_the_payment_held(api: Api, runtime: Runtime) -> None:
    client, _, payment = await api.held_payment("40.00")
    await simulator(runtime).inject_fault("capture", "error")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 409
    assert (await row(runtime, payment["id"])).provider_operation is None
    admin = await api.admin()
    assert [a["kind"] for a in (await api.get("/admin/alerts", admin))["items"]] == [
        "capture_failed"
    ]
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"


async def test_a_lost_refund_answer_is_finished_once(api: Api, runtime: Runtime) -> None:
    client, pro, payment = await api.held_payment("40.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await simulator(runtime).inject_fault("refund", "timeout_after_success")
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "10.00", "reason": "x"}
    )
    assert r.status_code == 502
    stuck = await row(runtime, payment["id"])
    assert stuck.provider_operation is not None and stuck.refunded_amount == 0
    refund_id = int(stuck.provider_operation.split(":")[1])

    # What the resolver does: the same call with the same key, then the entry.
    await finish_refund(runtime, payment["id"], refund_id, actor_id=None)
    await finish_refund(runtime, payment["id"], refund_id, actor_id=None)
    done = await row(runtime, payment["id"])
    assert done.refunded_amount == 1000 and done.provider_operation is None
    hold = await simulator(runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.refunded_amount == 1000
    assert (await api.earnings(pro))["available_balance"] == "28.50"  # 38.00 - 9.50
