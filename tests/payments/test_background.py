"""The periodic and scheduled work on payments: automatic release, the hold guard (with a
clock the test sets), the resolver of provider calls left in flight. Exact amounts; the
ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from handwork_payments.app import create_app
from handwork_payments.kit.clock import now
from handwork_payments.models import HoldKind
from handwork_payments.payments import background
from handwork_payments.providers.base import HoldRef, HoldState
from handwork_payments.runtime import Runtime
from handwork_payments.worker import running_worker
from tests.conftest import make_settings
from tests.faults import audit_actions, payment_row, simulator
from tests.helpers import Api, Party, eventually
from tests.payments.flows import paypal_held


@pytest.fixture
async def fast(runtime: Runtime, database_url: str) -> AsyncIterator[Api]:
    """The API and a worker with AUTO_RELEASE_HOURS=0.001 (3.6 s) and quick polling."""
    built = Runtime.build(
        make_settings(database_url, auto_release_hours="0.001", worker_poll_seconds=0.2),
        database_url,
    )
    try:
        transport = httpx.ASGITransport(app=create_app(built))
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as http,
            running_worker(built, concurrency=2, name="fast"),
        ):
            yield Api(http, built)
    finally:
        await built.aclose()


async def jobs_left(runtime: Runtime, task: str) -> int:
    async with runtime.engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
                "AND status IN ('todo', 'doing')"
            ),
            {"task": task},
        )
        return int(count or 0)


async def completed(api: Api, pro: Party, payment: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(f"/bookings/{payment['booking_id']}/complete", pro)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = await api.get(f"/payments/{payment['id']}", pro)
    return result


async def test_auto_release_releases_a_completed_payment_within_seconds(fast: Api) -> None:
    client, pro, payment = await fast.held_payment("80.00")
    shown = await completed(fast, pro, payment)
    assert shown["auto_release_at"] is not None

    async def released() -> bool:
        current = await fast.get(f"/payments/{payment['id']}", client)
        return bool(current["status"] == "released")

    await eventually(released, timeout_seconds=15)
    earnings = await fast.earnings(pro)
    assert earnings["available_balance"] == "76.00"  # 80.00 - 4.00 fee
    assert earnings["pending_balance"] == "0.00"
    hold = await simulator(fast.runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.state == HoldState.CAPTURED and hold.captured_amount == 8000
    assert "payment.released" in await audit_actions(fast.runtime, "payment", payment["id"])


async def test_auto_release_leaves_disputed_and_refunded_payments(fast: Api) -> None:
    client, pro, disputed = await fast.held_payment("50.00")
    await completed(fast, pro, disputed)
    r = await fast.post(
        "/payments/disputes",
        client,
        {"payment_id": disputed["id"], "reason": "Not done", "description": "Half of it"},
    )
    assert r.status_code == 201, r.text

    _, pro2, refunded = await fast.held_payment("60.00")
    await completed(fast, pro2, refunded)
    r = await fast.post("/payments/refund", pro2, {"payment_id": refunded["id"], "reason": "x"})
    assert r.status_code == 200 and r.json()["status"] == "refunded", r.text

    client3, pro3, released_by_client = await fast.held_payment("70.00")
    await completed(fast, pro3, released_by_client)
    r = await fast.post(f"/payments/{released_by_client['id']}/release", client3)
    assert r.status_code == 200, r.text

    async def all_ran() -> bool:
        return await jobs_left(fast.runtime, "hp:auto_release") == 0

    await eventually(all_ran, timeout_seconds=15)
    assert (await payment_row(fast.runtime, disputed["id"])).status == "disputed"
    assert (await payment_row(fast.runtime, refunded["id"])).status == "refunded"
    assert (await payment_row(fast.runtime, released_by_client["id"])).status == "released"
    assert (await fast.earnings(pro))["available_balance"] == "0.00"
    assert (await fast.earnings(pro2))["available_balance"] == "0.00"
    assert (await fast.earnings(pro3))["available_balance"] == "66.50"
    # Released once, by the client.
    actions = await audit_actions(fast.runtime, "payment", released_by_client["id"])
    assert actions.count("payment.released") == 1


async def test_auto_release_hours_zero_disables_it(runtime: Runtime, database_url: str) -> None:
    built = Runtime.build(make_settings(database_url, auto_release_hours="0"), database_url)
    try:
        transport = httpx.ASGITransport(app=create_app(built))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            api = Api(http, built)
            _, pro, payment = await api.held_payment("20.00")
            shown = await completed(api, pro, payment)
    finally:
        await built.aclose()
    assert shown["auto_release_at"] is None and shown["status"] == "held"
    assert await jobs_left(runtime, "hp:auto_release") == 0
    # Nor does the sweep of overdue releases touch it, however late.
    report = await background.release_overdue(runtime, now=now() + timedelta(days=365))
    assert report.released == []


async def test_overdue_release_is_swept_when_its_job_is_lost(api: Api, runtime: Runtime) -> None:
    _, pro, payment = await api.held_payment("40.00")
    shown = await completed(api, pro, payment)  # AUTO_RELEASE_HOURS=72, no worker running
    deadline = (await payment_row(runtime, payment["id"])).auto_release_at
    assert deadline is not None and shown["auto_release_at"] is not None
    report = await background.release_overdue(runtime, now=deadline + timedelta(seconds=1))
    assert report.released == []  # within the job's own delay: the job's business
    late = deadline + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)
    report = await background.release_overdue(runtime, now=late)
    assert report.released == [payment["id"]]
    assert (await api.earnings(pro))["available_balance"] == "38.00"
    assert (await background.release_overdue(runtime, now=late)).released == []


# --- the hold guard -------------------------------------------------------------------------


def margin(runtime: Runtime) -> timedelta:
    return timedelta(hours=runtime.settings.capture_margin_hours)


async def test_hold_guard_captures_before_the_deadline_and_keeps_the_payment_held(
    api: Api, runtime: Runtime
) -> None:
    client, pro, payment = await api.held_payment("150.00")
    row = await payment_row(runtime, payment["id"])
    assert row.hold_kind == HoldKind.AUTHORIZED and row.capture_by is not None
    due = row.capture_by - margin(runtime)

    assert not await background.guard_holds(runtime, now=now())
    assert not await background.guard_holds(runtime, now=due - timedelta(minutes=1))
    report = await background.guard_holds(runtime, now=due + timedelta(seconds=1))
    assert report.captured == [payment["id"]] and not report.not_done

    row = await payment_row(runtime, payment["id"])
    assert row.status == "held" and row.hold_kind == HoldKind.CAPTURED
    assert row.captured_amount == 15000 and row.capture_by is None
    assert row.provider_operation is None and row.released_at is None
    hold = await simulator(runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.state == HoldState.CAPTURED and hold.captured_amount == 15000
    # Still in escrow: the worker has nothing yet; the API shows no deadline to lapse.
    earnings = await api.earnings(pro)
    assert earnings["pending_balance"] == "142.50" and earnings["available_balance"] == "0.00"
    assert (await api.get(f"/payments/{payment['id']}", client))["capture_by"] is None
    assert await audit_actions(runtime, "payment", payment["id"]) == [
        "payment.created",
        "payment.held",
        "hold_guard.capture",
        "payment.captured",
    ]
    # Nothing left to guard; the client's release needs no second capture.
    assert not await background.guard_holds(runtime, now=due + timedelta(days=30))
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert (await api.earnings(pro))["available_balance"] == "142.50"


async def test_hold_guard_captures_what_is_left_of_a_disputed_partly_refunded_hold(
    api: Api, runtime: Runtime
) -> None:
    client, pro, payment = await api.held_payment("100.00")
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "30.00", "reason": "x"}
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": payment["id"], "reason": "Late", "description": "Two days late"},
    )
    assert r.status_code == 201, r.text
    row = await payment_row(runtime, payment["id"])
    assert row.capture_by is not None
    report = await background.guard_holds(runtime, now=row.capture_by)
    assert report.captured == [payment["id"]]
    row = await payment_row(runtime, payment["id"])
    assert row.status == "disputed" and row.captured_amount == 7000
    hold = await simulator(runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.captured_amount == 7000

    admin = await api.admin()
    dispute = (await api.get("/payments/disputes", admin))["items"][0]
    r = await api.post(
        f"/payments/disputes/{dispute['id']}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "20.00", "resolution_notes": "Late"},
    )
    assert r.status_code == 200, r.text
    final = await payment_row(runtime, payment["id"])
    assert final.status == "released" and final.refunded_amount == 5000
    hold = await simulator(runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.refunded_amount == 2000  # refunded at the provider: captured money
    assert (await api.earnings(pro))["available_balance"] == "47.50"  # 50.00 - 2.50


async def test_a_guard_capture_whose_answer_is_lost_is_finished_by_the_resolver(
    api: Api, runtime: Runtime
) -> None:
    client, pro, payment = await api.held_payment("25.00")
    row = await payment_row(runtime, payment["id"])
    assert row.capture_by is not None
    await simulator(runtime).inject_fault("capture", "timeout_after_success")
    report = await background.guard_holds(runtime, now=row.capture_by)
    assert report.captured == [] and payment["id"] in report.not_done
    stuck = await payment_row(runtime, payment["id"])
    assert stuck.provider_operation == "capture" and stuck.hold_kind == HoldKind.AUTHORIZED

    stale = timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    assert not await background.resolve_operations(runtime, now=now())  # still in flight
    report = await background.resolve_operations(runtime, now=now() + stale)
    assert report.resumed == [payment["id"]] and not report.not_done
    row = await payment_row(runtime, payment["id"])
    assert row.status == "held" and row.hold_kind == HoldKind.CAPTURED
    assert row.provider_operation is None and row.captured_amount == 2500
    assert (await api.earnings(pro))["available_balance"] == "0.00"  # not released
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"


async def test_a_release_during_the_guards_capture_finishes_it_and_releases(
    api: Api, runtime: Runtime
) -> None:
    client, pro, payment = await api.held_payment("25.00")
    row = await payment_row(runtime, payment["id"])
    assert row.capture_by is not None
    await simulator(runtime).inject_fault("capture", "timeout_after_success")
    await background.guard_holds(runtime, now=row.capture_by)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    assert (await api.earnings(pro))["available_balance"] == "23.75"
    assert (await payment_row(runtime, payment["id"])).captured_amount == 2500


async def test_paypal_hold_is_reauthorised_after_the_honour_period_then_captured(
    api: Api, runtime: Runtime
) -> None:
    client, pro, payment = await paypal_held(api, "120.00")
    row = await payment_row(runtime, payment["id"])
    assert row.held_at is not None and row.capture_by is not None
    first_authorization = row.provider_authorization_id
    honour_over = row.held_at + background.PAYPAL_HONOUR_PERIOD

    assert not await background.guard_holds(runtime, now=honour_over - timedelta(minutes=1))
    report = await background.guard_holds(runtime, now=honour_over + timedelta(seconds=1))
    assert report.reauthorized == [payment["id"]] and report.captured == []
    renewed = await payment_row(runtime, payment["id"])
    assert renewed.reauthorized_at is not None
    assert renewed.provider_authorization_id not in (None, first_authorization)
    assert renewed.capture_by == row.capture_by  # the 29 days still count from the first
    assert renewed.status == "held" and renewed.hold_kind == HoldKind.AUTHORIZED
    # Once only.
    assert not await background.guard_holds(runtime, now=honour_over + timedelta(days=1))

    assert renewed.capture_by is not None
    report = await background.guard_holds(runtime, now=renewed.capture_by - margin(runtime))
    assert report.captured == [payment["id"]]
    order = await simulator(runtime, "paypal").order_object(payment["paypal_payment_id"])
    authorizations = order["purchase_units"][0]["payments"]["authorizations"]
    assert [a["status"] for a in authorizations] == ["VOIDED", "CAPTURED"]
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released"
    assert (await api.earnings(pro))["available_balance"] == "114.00"
    assert "hold_guard.reauthorized" in await audit_actions(runtime, "payment", payment["id"])


async def test_a_refused_reauthorisation_alerts_and_captures_at_once(
    api: Api, runtime: Runtime
) -> None:
    _, _, payment = await paypal_held(api, "30.00")
    row = await payment_row(runtime, payment["id"])
    assert row.held_at is not None
    await simulator(runtime, "paypal").inject_fault("reauthorize", "error")
    report = await background.guard_holds(
        runtime, now=row.held_at + background.PAYPAL_HONOUR_PERIOD
    )
    assert report.reauthorized == [] and report.captured == [payment["id"]]
    row = await payment_row(runtime, payment["id"])
    assert row.status == "held" and row.hold_kind == HoldKind.CAPTURED
    admin = await api.admin()
    kinds = [a["kind"] for a in (await api.get("/admin/alerts", admin))["items"]]
    assert kinds == ["reauthorization_failed"]


# --- the resolver ---------------------------------------------------------------------------


async def test_a_refund_left_in_flight_is_resumed_once(api: Api, runtime: Runtime) -> None:
    client, pro, payment = await api.held_payment("40.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    await simulator(runtime).inject_fault("refund", "timeout_after_success")
    r = await api.post(
        "/payments/refund", pro, {"payment_id": payment["id"], "amount": "10.00", "reason": "x"}
    )
    assert r.status_code == 502
    stale = timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    report = await background.resolve_operations(runtime, now=now() + stale)
    assert report.resumed == [payment["id"]]
    assert not await background.resolve_operations(runtime, now=now() + stale)
    row = await payment_row(runtime, payment["id"])
    assert row.refunded_amount == 1000 and row.provider_operation is None
    hold = await simulator(runtime).get_hold(HoldRef(payment["stripe_payment_id"]))
    assert hold.refunded_amount == 1000
    assert (await api.earnings(pro))["available_balance"] == "28.50"


async def test_the_resolver_leaves_a_call_that_still_fails_marked(
    api: Api, runtime: Runtime
) -> None:
    client, _, payment = await api.held_payment("40.00")
    await simulator(runtime).inject_fault("capture", "timeout", times=2)
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 502
    stale = timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    report = await background.resolve_operations(runtime, now=now() + stale)
    assert report.resumed == [] and payment["id"] in report.not_done
    assert (await payment_row(runtime, payment["id"])).provider_operation == "capture"
    report = await background.resolve_operations(runtime, now=now() + stale)
    assert report.resumed == [payment["id"]]
    row = await payment_row(runtime, payment["id"])
    assert row.hold_kind == HoldKind.CAPTURED and row.status == "held"


async def test_a_hold_without_a_provider_deadline_is_captured_by_our_count(
    api: Api, runtime: Runtime
) -> None:
    _, _, payment = await api.held_payment("15.00")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text("UPDATE payments SET capture_by = NULL WHERE id = :id"), {"id": payment["id"]}
        )
    row = await payment_row(runtime, payment["id"])
    assert row.held_at is not None
    due = row.held_at + background.AUTHORIZATION_WINDOW[row.payment_method] - margin(runtime)
    assert not await background.guard_holds(runtime, now=due - timedelta(minutes=1))
    report = await background.guard_holds(runtime, now=due + timedelta(seconds=1))
    assert report.captured == [payment["id"]]
    assert (await payment_row(runtime, payment["id"])).hold_kind == HoldKind.CAPTURED
