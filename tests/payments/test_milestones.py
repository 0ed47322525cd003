"""Milestones end to end over HTTP, on the simulators, with exact amounts in a two-, a
zero- and a three-decimal currency. The fee is 5% (round half up); each milestone's share
of it is the fee of the running total rounded down, less the shares before it. The
ledger's invariants (the milestones' one among them) are checked after every test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from handwork_payments.kit.clock import now
from handwork_payments.models import MarketplaceEvent, Payment
from handwork_payments.payments import background
from handwork_payments.runtime import Runtime
from tests.faults import simulator
from tests.helpers import Api, Party
from tests.payments.flows import payment_of


async def milestone_booking(
    api: Api, amount: str, currency: str, parts: list[str]
) -> tuple[Party, Party, dict[str, Any], dict[str, Any]]:
    """A client, a worker, a booking in milestones and its held Stripe payment."""
    client, worker = await api.user("client"), await api.user("worker")
    r = await api.post(
        "/bookings",
        client,
        {
            "worker_id": worker.id,
            "title": "Rebuild the kitchen",
            "amount": amount,
            "currency": currency,
            "milestones": [{"title": f"Part {n}", "amount": a} for n, a in enumerate(parts, 1)],
        },
    )
    assert r.status_code == 201, r.text
    booking = r.json()
    r = await api.stripe_payment(client, booking)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "held"
    return client, worker, booking, r.json()


async def release(api: Api, client: Party, payment_id: int, milestone_id: int) -> dict[str, Any]:
    r = await api.post(f"/payments/{payment_id}/release", client, {"milestone_id": milestone_id})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def fee_rows(api: Api) -> list[str]:
    admin = await api.admin()
    return [t["amount"] for t in (await api.get("/payments/transactions", admin))["items"]]


async def test_usd_milestones_released_one_by_one_add_up_to_the_fee(api: Api) -> None:
    client, pro, booking, payment = await milestone_booking(
        api, "100.01", "USD", ["33.33", "33.33", "33.35"]
    )
    assert payment["platform_fee"] == "5.00" and payment["worker_amount"] == "95.01"
    parts = booking["milestones"]
    assert [(m["title"], m["amount"], m["status"]) for m in parts] == [
        ("Part 1", "33.33", "pending"),
        ("Part 2", "33.33", "pending"),
        ("Part 3", "33.35", "pending"),
    ]
    first, second, third = (m["id"] for m in parts)

    held = await release(api, client, payment["id"], first)
    # Fee shares: floor(3333*500/10001) = 166; floor(6666*500/10001) = 333, so 167; 167.
    assert held["status"] == "held" and held["released_amount"] == "33.33"
    assert (await api.earnings(pro))["available_balance"] == "31.67"
    assert (await api.earnings(pro))["pending_balance"] == "63.34"
    # The authorisation was captured whole by the first release; the rest stays in escrow.
    async with api.runtime.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.id == payment["id"]))
        assert row is not None and row.captured_amount == 10001
    r = await api.post(f"/payments/{payment['id']}/release", client, {"milestone_id": first})
    assert r.status_code == 409, r.text
    assert "released already" in r.json()["detail"]

    await release(api, client, payment["id"], second)
    final = await release(api, client, payment["id"], third)
    assert final["status"] == "released" and final["released_amount"] == "100.01"
    assert (await api.earnings(pro))["available_balance"] == "95.01"
    assert await fee_rows(api) == ["1.67", "1.67", "1.66"]
    shown = await api.get(f"/bookings/{booking['id']}", client)
    assert shown["status"] == "closed"
    assert [m["status"] for m in shown["milestones"]] == ["released"] * 3
    assert all(m["released_at"] for m in shown["milestones"])
    r = await api.post(f"/payments/{payment['id']}/release", client, {"milestone_id": third})
    assert r.status_code == 409
    async with api.runtime.sessions() as session:
        events = (
            await session.execute(
                select(MarketplaceEvent.type, MarketplaceEvent.data).order_by(MarketplaceEvent.id)
            )
        ).all()
    told = [(kind, data.get("milestone", {}).get("amount")) for kind, data in events]
    assert told == [
        ("payment.held", None),
        ("payment.milestone_released", "33.33"),
        ("balance.available", None),
        ("payment.milestone_released", "33.33"),
        ("balance.available", None),
        ("payment.released", None),
        ("balance.available", None),
    ]
    # The worker's share of each release: 31.67, 31.66, 31.68.
    assert [d["amount"] for k, d in events if k == "balance.available"] == [
        "31.67",
        "31.66",
        "31.68",
    ]


async def test_jpy_refund_takes_the_newest_unreleased_milestone_first(api: Api) -> None:
    client, pro, booking, payment = await milestone_booking(
        api, "10000", "JPY", ["3333", "3333", "3334"]
    )
    assert payment["platform_fee"] == "500"
    first, second, third = (m["id"] for m in booking["milestones"])
    # Fee shares 166, 167, 167: the middle one released first.
    await release(api, client, payment["id"], second)
    assert (await api.earnings(pro, "JPY"))["available_balance"] == "3166"

    # A released milestone is not refunded while the payment still holds money.
    r = await api.post(
        "/payments/refund",
        pro,
        {"payment_id": payment["id"], "amount": "1", "reason": "r", "milestone_id": second},
    )
    assert r.status_code == 409, r.text
    # No more than what is held (6667) is refunded while the payment is held.
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "6668", "reason": "r"}
    )
    assert r.status_code == 400, r.text

    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "4000", "reason": "Less"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held" and r.json()["refunded_amount"] == "4000"
    # All of the third (3334, fee 167) and 666 of the first (fee floor(666*166/3333) = 33).
    shown = await api.get(f"/bookings/{booking['id']}", client)
    assert [m["status"] for m in shown["milestones"]] == ["pending", "released", "refunded"]
    # The worker's share still held: 3333 - 666 - (166 - 33).
    assert (await api.earnings(pro, "JPY"))["pending_balance"] == "2534"

    # No body: everything still held (the rest of the first) is released.
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released" and r.json()["released_amount"] == "6000"
    # 3166 + 2534 = 5700 = 9500 - (4000 - 200).
    assert (await api.earnings(pro, "JPY"))["available_balance"] == "5700"
    assert await fee_rows(api) == ["133", "167"]
    shown = await api.get(f"/bookings/{booking['id']}", client)
    assert [m["status"] for m in shown["milestones"]] == ["released", "released", "refunded"]
    assert first == shown["milestones"][0]["id"] and third == shown["milestones"][2]["id"]

    # Once released, a milestone named is refunded from the worker's balance and the fee.
    r = await api.post(
        "/payments/refund",
        pro,
        {"payment_id": payment["id"], "amount": "3333", "reason": "r", "milestone_id": second},
    )
    assert r.status_code == 200, r.text
    assert (await api.earnings(pro, "JPY"))["available_balance"] == "2534"
    assert await fee_rows(api) == ["-167", "133", "167"]


async def test_kwd_dispute_freezes_the_rest_and_a_split_applies_to_it(api: Api) -> None:
    client, pro, booking, payment = await milestone_booking(
        api, "10.000", "KWD", ["2.500", "7.500"]
    )
    assert payment["platform_fee"] == "0.500"
    first, second = (m["id"] for m in booking["milestones"])
    await release(api, client, payment["id"], first)
    # Fee share floor(2500*500/10000) = 125: the worker gets 2.375.
    assert (await api.earnings(pro, "KWD"))["available_balance"] == "2.375"

    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": payment["id"], "reason": "Second half not done", "description": "-"},
    )
    assert r.status_code == 201, r.text
    dispute = r.json()
    r = await api.post(f"/payments/{payment['id']}/release", client, {"milestone_id": second})
    assert r.status_code == 409, r.text

    admin = await api.admin()
    # The split divides what is held (7.500), not the payment.
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "7.500", "resolution_notes": "n"},
    )
    assert r.status_code == 400, r.text
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "3.000", "resolution_notes": "Part done"},
    )
    assert r.status_code == 200, r.text
    final = await payment_of(api, client, payment["id"])
    assert final["status"] == "released"
    assert final["refunded_amount"] == "3.000" and final["released_amount"] == "7.000"
    # Refund fee part floor(3000*375/7500) = 150; released 4.500 with fee 0.225: 4.275.
    assert (await api.earnings(pro, "KWD"))["available_balance"] == "6.650"
    assert await fee_rows(api) == ["0.225", "0.125"]


async def test_refunding_all_that_is_held_settles_the_payment_as_released(api: Api) -> None:
    client, pro, booking, payment = await milestone_booking(
        api, "300.00", "USD", ["100.00", "100.00", "100.00"]
    )
    first = booking["milestones"][0]["id"]
    await release(api, client, payment["id"], first)
    r = await api.post(f"/bookings/{booking['id']}/cancel", client)
    assert r.status_code == 409, r.text
    # No amount: all that is held (the two unreleased milestones).
    r = await api.post("/payments/refund", pro, {"payment_id": payment["id"], "reason": "Stop"})
    assert r.status_code == 200, r.text
    settled = r.json()
    assert settled["status"] == "released" and settled["refunded_amount"] == "200.00"
    shown = await api.get(f"/bookings/{booking['id']}", client)
    assert shown["status"] == "closed"
    assert [m["status"] for m in shown["milestones"]] == ["released", "refunded", "refunded"]
    # 100.00 released with its fee share 5.00.
    assert (await api.earnings(pro))["available_balance"] == "95.00"
    summary = await api.get("/payments/summary/client", client, currency="USD")
    assert summary["total_released"] == "100.00" and summary["total_refunded"] == "200.00"


async def test_a_refund_naming_a_pending_milestone_takes_only_from_it(api: Api) -> None:
    client, pro, booking, payment = await milestone_booking(
        api, "150.00", "USD", ["50.00", "100.00"]
    )
    first, second = (m["id"] for m in booking["milestones"])
    r = await api.post(
        "/payments/refund",
        pro,
        {"payment_id": payment["id"], "amount": "50.01", "reason": "r", "milestone_id": first},
    )
    assert r.status_code == 400, r.text
    r = await api.post(
        "/payments/refund",
        pro,
        {"payment_id": payment["id"], "amount": "20.00", "reason": "r", "milestone_id": first},
    )
    assert r.status_code == 200, r.text
    # Authorised, not captured: a partial refund needs no provider call; the release
    # captures 130.00 and releases the rest of the first milestone (30.00, fee 2.50 - 1.00).
    held = await release(api, client, payment["id"], first)
    assert held["status"] == "held" and held["released_amount"] == "30.00"
    assert (await api.earnings(pro))["available_balance"] == "28.50"
    async with api.runtime.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.id == payment["id"]))
        assert row is not None and row.captured_amount == 13000
    r = await api.post(f"/payments/{payment['id']}/release", client, {"milestone_id": second})
    assert r.status_code == 200 and r.json()["status"] == "released"
    # 150.00 - 20.00 refunded (fee part 1.00): the worker 142.50 - 19.00.
    assert (await api.earnings(pro))["available_balance"] == "123.50"


async def test_release_of_a_milestone_checks_whose_it_is(api: Api) -> None:
    client, pro, payment = await api.held_payment("150.00")
    r = await api.post(f"/payments/{payment['id']}/release", client, {"milestone_id": 1})
    assert r.status_code == 404, r.text
    other_client, _, booking, other = await milestone_booking(
        api, "20.00", "USD", ["10.00", "10.00"]
    )
    milestone = booking["milestones"][0]["id"]
    r = await api.post(f"/payments/{payment['id']}/release", client, {"milestone_id": milestone})
    assert r.status_code == 404, r.text
    r = await api.post(f"/payments/{other['id']}/release", pro, {"milestone_id": milestone})
    assert r.status_code == 404, r.text
    r = await api.post(f"/payments/{other['id']}/release", other_client, {"milestone_id": 0})
    assert r.status_code == 422, r.text
    r = await api.post(f"/payments/{other['id']}/release", other_client, {"other": 1})
    assert r.status_code == 422, r.text
    assert (await payment_of(api, other_client, other["id"]))["released_amount"] == "0.00"


async def test_completion_auto_releases_the_whole_held_remainder(
    api: Api, runtime: Runtime
) -> None:
    client, pro, booking, payment = await milestone_booking(
        api, "90.00", "USD", ["30.00", "30.00", "30.00"]
    )
    await release(api, client, payment["id"], booking["milestones"][0]["id"])
    r = await api.post(f"/bookings/{booking['id']}/complete", pro)
    assert r.status_code == 200, r.text
    async with runtime.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.id == payment["id"]))
        assert row is not None and row.auto_release_at is not None
        deadline = row.auto_release_at
    # Completion is the whole job done: after AUTO_RELEASE_HOURS (and the job's own
    # delay), the sweep releases everything still held, not one milestone.
    late = deadline + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)
    report = await background.release_overdue(runtime, now=late)
    assert report.released == [payment["id"]]
    final = await payment_of(api, client, payment["id"])
    assert final["status"] == "released" and final["released_amount"] == "90.00"
    # 90.00 less the 5% fee 4.50 (1.50 a milestone).
    assert (await api.earnings(pro))["available_balance"] == "85.50"
    shown = await api.get(f"/bookings/{booking['id']}", client)
    assert [m["status"] for m in shown["milestones"]] == ["released"] * 3


async def test_paypal_authorisation_is_captured_whole_by_the_first_milestone(api: Api) -> None:
    client, pro = await api.user("client"), await api.user("worker")
    r = await api.post(
        "/bookings",
        client,
        {
            "worker_id": pro.id,
            "title": "Paint the house",
            "amount": "200.00",
            "currency": "USD",
            "milestones": [
                {"title": "Walls", "amount": "120.00"},
                {"title": "Trim", "amount": "80.00"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    booking = r.json()
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": "200.00",
            "currency": "USD",
            "return_url": "https://app.example.com/ok",
            "cancel_url": "https://app.example.com/cancel",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    approval = await api.client.get(created["approval_url"])
    r = await api.post(
        "/payments/paypal/execute",
        client,
        {
            "payment_id": created["paypal_payment_id"],
            "payer_id": approval.json()["payer_id"],
            "booking_id": booking["id"],
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "held", r.text
    walls, trim = (m["id"] for m in booking["milestones"])
    held = await release(api, client, created["id"], walls)
    assert held["status"] == "held" and held["capture_by"] is None
    # Fee 10.00: floor(12000*1000/20000) = 600 for the walls, 400 for the trim.
    assert (await api.earnings(pro))["available_balance"] == "114.00"
    assert (await api.earnings(pro))["pending_balance"] == "76.00"
    final = await release(api, client, created["id"], trim)
    assert final["status"] == "released"
    assert (await api.earnings(pro))["available_balance"] == "190.00"
    assert await fee_rows(api) == ["4.00", "6.00"]


async def test_no_release_while_a_refund_call_is_in_flight(api: Api, runtime: Runtime) -> None:
    client, pro, booking, payment = await milestone_booking(api, "60.00", "USD", ["20.00", "40.00"])
    first, second = (m["id"] for m in booking["milestones"])
    await release(api, client, payment["id"], first)  # captured now
    await simulator(runtime).inject_fault("refund", "timeout")
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "10.00", "reason": "x"}
    )
    assert r.status_code == 502, r.text
    await simulator(runtime).clear_faults()
    # Neither a milestone nor the whole may be released over the refund's marker: the
    # release would clear it and the refund, made at the provider, never be booked.
    for body in ({"milestone_id": second}, None):
        r = await api.post(f"/payments/{payment['id']}/release", client, body)
        assert r.status_code == 409, r.text
    stale = runtime.settings.provider_operation_stale_seconds
    report = await background.resolve_operations(runtime, now=now() + timedelta(seconds=stale + 5))
    assert report.resumed == [payment["id"]]
    final = await release(api, client, payment["id"], second)
    assert final["status"] == "released" and final["refunded_amount"] == "10.00"
    # Fee shares 1.00 and 2.00: 19.00 for the first; the refund took 10.00 of the second
    # (fee part floor(1000*200/4000) = 0.50), whose 30.00 left goes with a 1.50 fee: 28.50.
    assert (await api.earnings(pro))["available_balance"] == "47.50"
