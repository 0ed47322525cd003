"""The schedules' API: creation and its setup, who sees and changes what, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text

from handwork_payments.kit.clock import now
from handwork_payments.models import RecurringSchedule, SimulatedObject
from handwork_payments.recurring.runs import run_due
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks.service import process
from tests.faults import simulator
from tests.helpers import Api
from tests.recurring.flows import active_schedule

START = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)


def body(worker_id: int, **changes: Any) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "title": "Garden",
        "amount": "40.00",
        "currency": "USD",
        "interval": "biweekly",
        "starts_at": START.isoformat(),
        "payment_method": "stripe",
    } | changes


async def schedules(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count(RecurringSchedule.id))) or 0)


async def test_the_setup_succeeded_webhook_activates_the_schedule(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    r = await api.post("/recurring-schedules", client, body(worker.id, occurrences=3))
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["status"], created["next_run_at"], created["runs"]) == (
        "pending_setup",
        None,
        [],
    )
    assert (created["amount"], created["occurrences"]) == ("40.00", 3)
    setup_id = created["setup"]["setup_intent_id"]
    r = await api.post(
        f"/simulator/stripe/setup_intents/{setup_id}/confirm",
        None,
        {"payment_method": "pm_card_visa"},
    )
    assert r.status_code == 200 and r.json()["customer"].startswith("cus_"), r.text
    async with runtime.engine.connect() as conn:
        delivery = await conn.scalar(
            text("SELECT id FROM webhook_deliveries WHERE event_type = 'setup_intent.succeeded'")
        )
    assert delivery is not None
    await process(runtime, int(delivery))
    async with runtime.sessions() as session:
        schedule = await session.get(RecurringSchedule, created["id"])
    assert schedule is not None
    assert (schedule.status, schedule.saved_method) == ("active", "pm_card_visa")
    assert schedule.next_run_at == START
    shown = await api.get(f"/recurring-schedules/{created['id']}", client)
    assert shown["setup"] == {
        "setup_intent_id": setup_id,
        "client_secret": None,
        "approval_url": None,
    }


async def test_a_start_in_the_past_is_due_at_once(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    past = now() - timedelta(days=2)
    schedule = await active_schedule(api, client, worker, starts_at=past, interval="weekly")
    assert datetime.fromisoformat(schedule["next_run_at"]) == past
    assert await run_due(runtime, now=now()) == 1


async def test_who_sees_and_changes_a_schedule(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    stranger, admin = await api.user("client"), await api.admin()
    schedule = await active_schedule(api, client, worker, starts_at=START)
    sid = schedule["id"]
    assert [s["id"] for s in (await api.get("/recurring-schedules", client))["items"]] == [sid]
    assert [s["id"] for s in (await api.get("/recurring-schedules", worker))["items"]] == [sid]
    assert (await api.get("/recurring-schedules", stranger))["total"] == 0
    assert (await api.get("/recurring-schedules", admin))["total"] == 1
    r = await api.client.get(f"/api/v1/recurring-schedules/{sid}", headers=stranger.headers)
    assert r.status_code == 404
    r = await api.post(f"/recurring-schedules/{sid}/pause", worker)
    assert r.status_code == 403, r.text
    r = await api.post(f"/recurring-schedules/{sid}/pause", stranger)
    assert r.status_code == 404, r.text
    r = await api.post(f"/recurring-schedules/{sid}/pause", client)
    assert (r.status_code, r.json()["status"], r.json()["next_run_at"]) == (200, "paused", None)
    assert await run_due(runtime, now=START) == 0  # paused: nothing is charged
    r = await api.post(f"/recurring-schedules/{sid}/pause", client)
    assert r.status_code == 409, r.text
    # Resumed after two occurrences fell due: those are skipped, not charged in a burst.
    r = await api.post(f"/recurring-schedules/{sid}/resume", admin)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    r = await api.post(f"/recurring-schedules/{sid}/cancel", client)
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    r = await api.post(f"/recurring-schedules/{sid}/resume", client)
    assert r.status_code == 409, r.text


async def test_resuming_skips_the_occurrences_missed_while_paused(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    start = now() - timedelta(days=15)
    schedule = await active_schedule(api, client, worker, starts_at=start, interval="weekly")
    sid = schedule["id"]
    r = await api.post(f"/recurring-schedules/{sid}/pause", client)
    assert r.status_code == 200
    r = await api.post(f"/recurring-schedules/{sid}/resume", client)
    resumed = r.json()
    # Due on days 0, 7 and 14 after the start (all past): the next is day 21.
    assert datetime.fromisoformat(resumed["next_run_at"]) == start + timedelta(days=21)
    assert await run_due(runtime, now=now()) == 0
    assert await run_due(runtime, now=start + timedelta(days=21)) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert [r["number"] for r in shown["runs"]] == [4]


async def test_bad_input_changes_nothing(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    cases = [
        (body(worker.id, interval="daily"), 422),
        (body(worker.id, occurrences=0), 422),
        (body(worker.id, amount="1.001"), 422),
        (body(worker.id, starts_at="2027-03-15T12:00:00"), 422),  # no time zone
        (body(worker.id, starts_at="1999-03-15T12:00:00Z"), 422),
        (body(worker.id, extra=True), 422),
        (body(worker.id, payment_method="cash"), 422),
        (body(client.id), 404),  # not a worker
        (body(99999), 404),
    ]
    for sent, status in cases:
        r = await api.post("/recurring-schedules", client, sent)
        assert r.status_code == status, (sent, r.text)
        assert isinstance(r.json()["detail"], (str, list))
    r = await api.post("/recurring-schedules", worker, body(worker.id))
    assert r.status_code == 403
    assert await schedules(runtime) == 0


async def test_setup_confirmation_in_the_simulator(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    r = await api.post("/recurring-schedules", client, body(worker.id))
    setup_id = r.json()["setup"]["setup_intent_id"]
    path = f"/simulator/stripe/setup_intents/{setup_id}/confirm"
    r = await api.post(path, None, {"payment_method": "pm_card_chargeDeclined"})
    assert r.status_code == 200 and r.json()["last_setup_error"]["code"] == "card_declined"
    assert r.json()["status"] == "requires_payment_method"
    r = await api.post(path, None, {"payment_method": "pm_card_nonsense"})
    assert r.status_code == 400, r.text
    r = await api.post("/simulator/stripe/setup_intents/seti_unknown/confirm", None,
                       {"payment_method": "pm_card_visa"})  # fmt: skip
    assert r.status_code == 404, r.text
    r = await api.post(path, None, {"payment_method": "pm_card_visa"})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    r = await api.post(path, None, {"payment_method": "pm_card_visa"})
    assert r.status_code == 409, r.text


async def test_a_setup_whose_answer_was_lost_is_resumed_by_reading_the_schedule(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    await simulator(runtime).inject_fault("create_setup", "timeout_after_success")
    r = await api.post("/recurring-schedules", client, body(worker.id))
    assert r.status_code == 502, r.text
    (pending,) = (await api.get("/recurring-schedules", client))["items"]
    assert (pending["status"], pending["setup"]) == ("pending_setup", None)
    assert f"#{pending['id']}" in r.json()["detail"]
    shown = await api.get(f"/recurring-schedules/{pending['id']}", client)
    setup = shown["setup"]
    assert setup["setup_intent_id"].startswith("seti_") and setup["client_secret"]
    # The same SetupIntent the lost call made (its key), not a second one.
    async with runtime.sessions() as session:
        made = await session.scalar(
            select(func.count())
            .select_from(SimulatedObject)
            .where(SimulatedObject.kind == "setup_intent")
        )
    assert made == 1
