"""The run job with a controlled clock (`run_due(now=...)`): each occurrence booked and
held in escrow through the one payment path, once, whatever dies or races; dunning after
declines. Exact amounts; the ledger's invariants are checked after every test (conftest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from handwork_payments.db import transaction
from handwork_payments.kit import jobs
from handwork_payments.kit.clock import now
from handwork_payments.models import Alert, MarketplaceEvent, RecurringRun, User
from handwork_payments.recurring import runs
from handwork_payments.recurring.runs import CLAIM_TIMEOUT, run_due
from handwork_payments.runtime import Runtime
from tests.faults import simulator
from tests.helpers import Api, eventually
from tests.recurring.flows import active_schedule, intents, payments_of, runs_of

START = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def test_a_monthly_schedule_from_31_january_over_a_year(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(api, client, worker, starts_at=START, occurrences=12)
    assert schedule["next_run_at"] == "2027-01-31T09:00:00Z"
    assert await run_due(runtime, now=START - timedelta(seconds=1)) == 0  # not due yet
    moments = []
    for _ in range(12):
        shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
        moment = datetime.fromisoformat(shown["next_run_at"])
        moments.append(moment.date().isoformat())
        assert await run_due(runtime, now=moment) == 1
        assert await run_due(runtime, now=moment) == 0  # the same moment: nothing left
    assert moments == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30",
        "2027-07-31", "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31",
    ]  # fmt: skip
    shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
    assert shown["status"] == "finished" and shown["next_run_at"] is None
    assert [r["number"] for r in shown["runs"]] == list(range(1, 13))
    assert {(r["status"], r["attempts"]) for r in shown["runs"]} == {("held", 1)}
    assert shown["runs"][1]["due_at"] == "2027-02-28T09:00:00Z"
    assert shown["runs"][2]["due_at"] == "2027-03-31T09:00:00Z"
    payments = await payments_of(runtime, schedule["id"])
    assert [(p.status, p.amount, p.platform_fee, p.worker_amount) for p in payments] == [
        ("held", 15000, 750, 14250)
    ] * 12
    assert await intents(runtime) == 12
    assert await run_due(runtime, now=START + timedelta(days=800)) == 0


@pytest.mark.parametrize(
    ("amount", "currency", "minor", "fee"),
    [("150.00", "USD", 15000, 750), ("15000", "JPY", 15000, 750), ("12.340", "KWD", 12340, 617)],
)
async def test_each_occurrence_is_a_payment_like_any_other(
    api: Api, runtime: Runtime, amount: str, currency: str, minor: int, fee: int
) -> None:
    """Held like a one-off payment, and released by the client the same way."""
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(
        api, client, worker, starts_at=START, interval="weekly", amount=amount, currency=currency
    )
    assert await run_due(runtime, now=START) == 1
    shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
    assert shown["next_run_at"] == "2027-02-07T09:00:00Z"
    run = shown["runs"][0]
    payment = await api.get(f"/payments/{run['payment_id']}", client)
    assert (payment["status"], payment["currency"], payment["amount"]) == (
        "held",
        currency,
        amount,
    )
    assert payment["booking_id"] == run["booking_id"]
    booking = await api.get(f"/bookings/{run['booking_id']}", client)
    assert (booking["status"], booking["title"]) == ("paid", "Weekly clean (#1)")
    rows = await payments_of(runtime, schedule["id"])
    assert [(p.amount, p.platform_fee, p.worker_amount) for p in rows] == [
        (minor, fee, minor - fee)
    ]
    r = await api.post(f"/bookings/{run['booking_id']}/complete", worker)
    assert r.status_code == 200, r.text
    r = await api.post(f"/payments/{run['payment_id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    earnings = await api.earnings(worker, currency)
    assert earnings["total_earned"] == payment["worker_amount"], earnings


async def test_a_decline_is_retried_after_a_day_and_recovers(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(api, client, worker, starts_at=START, interval="weekly")
    # The provider refuses the first charge (a decline for the schedule), then accepts.
    await simulator(runtime).inject_fault("create_hold", "error")
    assert await run_due(runtime, now=START) == 1
    shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
    assert shown["status"] == "active"
    assert shown["next_run_at"] == "2027-02-01T09:00:00Z"
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"], run["payment_id"]) == ("retrying", 1, None)
    assert await run_due(runtime, now=START + 23 * timedelta(hours=1)) == 0
    assert await run_due(runtime, now=START + DAY) == 1
    shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"], run["last_error"]) == ("held", 2, None)
    # The next occurrence keeps its own date: the retry shifted nothing.
    assert shown["next_run_at"] == "2027-02-07T09:00:00Z"
    payments = await payments_of(runtime, schedule["id"])
    assert [(p.status, p.amount) for p in payments] == [("failed", 15000), ("held", 15000)]
    assert payments[1].booking_id == payments[0].booking_id == run["booking_id"]


async def test_declines_to_the_last_retry_pause_the_schedule(api: Api, runtime: Runtime) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(
        api, client, worker, starts_at=START, card="pm_card_chargeCustomerFail"
    )
    sid = schedule["id"]
    # Attempts at the due time, then 1, 3 and 5 days after it (RECURRING_RETRY_DAYS=1,3,5).
    for offset, next_run in [(0, "2027-02-01"), (1, "2027-02-03"), (3, "2027-02-05")]:
        assert await run_due(runtime, now=START + offset * DAY) == 1
        shown = await api.get(f"/recurring-schedules/{sid}", client)
        assert (shown["status"], shown["next_run_at"][:10]) == ("active", next_run)
    assert await run_due(runtime, now=START + 5 * DAY) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert (shown["status"], shown["next_run_at"]) == ("paused", None)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"]) == ("failed", 4)
    assert "declined" in run["last_error"]
    assert await run_due(runtime, now=START + 30 * DAY) == 0
    payments = await payments_of(runtime, sid)
    assert [(p.status, p.amount) for p in payments] == [("failed", 15000)] * 4
    async with runtime.sessions() as session:
        alert = await session.scalar(
            select(Alert).where(Alert.kind == "recurring_payment_failed", Alert.object_id == sid)
        )
        event = await session.scalar(
            select(MarketplaceEvent).where(MarketplaceEvent.type == "recurring.payment_failed")
        )
    assert alert is not None and "150.00 USD" in alert.message
    assert event is not None
    assert (event.data["schedule_id"], event.data["attempts"], event.data["amount"]) == (
        sid,
        4,
        "150.00",
    )
    # Resumed: the unpaid occurrence is tried once more at once; declined, paused again.
    r = await api.post(f"/recurring-schedules/{sid}/resume", client)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    assert await run_due(runtime, now=START + 31 * DAY) == 1
    shown = await api.get(f"/recurring-schedules/{sid}", client)
    assert (shown["status"], shown["runs"][0]["attempts"]) == ("paused", 5)


async def test_authentication_required_off_session_is_dunned_like_a_decline(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(
        api, client, worker, starts_at=START, card="pm_card_authenticationRequired"
    )
    assert await run_due(runtime, now=START) == 1
    shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
    (run,) = shown["runs"]
    assert (run["status"], run["attempts"]) == ("retrying", 1)
    assert "authentication_required" in run["last_error"]
    assert shown["next_run_at"] == "2027-02-01T09:00:00Z"


async def test_a_job_killed_between_the_charge_and_its_record_charges_once(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(api, client, worker, starts_at=START, interval="weekly")
    real_record = runs._record

    async def killed(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the worker was killed")

    monkeypatch.setattr(runs, "_record", killed)
    with pytest.raises(RuntimeError):
        await runs.run_schedule(runtime, schedule["id"], now=START)
    monkeypatch.setattr(runs, "_record", real_record)
    (run,) = await runs_of(runtime, schedule["id"])
    assert (run.status, run.attempts, run.charging_since) == ("due", 0, START)
    assert await intents(runtime) == 1
    # Its claim is held until it is old enough to belong to a dead job.
    assert await run_due(runtime, now=START + timedelta(minutes=1)) == 0
    assert await run_due(runtime, now=START + CLAIM_TIMEOUT + timedelta(seconds=1)) == 1
    (run,) = await runs_of(runtime, schedule["id"])
    assert (run.status, run.attempts, run.charging_since) == ("held", 1, None)
    payments = await payments_of(runtime, schedule["id"])
    assert [(p.id, p.status, p.amount) for p in payments] == [(run.payment_id, "held", 15000)]
    assert await intents(runtime) == 1


async def test_a_charge_whose_answer_was_lost_is_resumed_under_its_key(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(api, client, worker, starts_at=START, interval="weekly")
    await simulator(runtime).inject_fault("create_hold", "timeout_after_success")
    assert await run_due(runtime, now=START) == 0  # no answer: nothing recorded
    (run,) = await runs_of(runtime, schedule["id"])
    assert (run.status, run.attempts, run.charging_since) == ("due", 0, None)
    assert await run_due(runtime, now=START + timedelta(minutes=1)) == 1
    (run,) = await runs_of(runtime, schedule["id"])
    assert (run.status, run.attempts) == ("held", 1)
    assert await intents(runtime) == 1


async def test_a_failing_schedule_does_not_hold_up_the_others(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    first = await active_schedule(api, client, worker, starts_at=START, interval="weekly")
    second = await active_schedule(api, client, worker, starts_at=START, interval="weekly")
    real_record = runs._record

    async def fails_for_the_first(runtime: Runtime, session: Any, claim: Any, *rest: Any) -> None:
        if claim.schedule_id == first["id"]:
            raise RuntimeError("a bug")
        await real_record(runtime, session, claim, *rest)

    monkeypatch.setattr(runs, "_record", fails_for_the_first)
    assert await run_due(runtime, now=START) == 1
    (run,) = await runs_of(runtime, second["id"])
    assert (run.status, run.attempts) == ("held", 1)


async def test_two_workers_racing_the_same_occurrence_charge_once(
    api: Api, runtime: Runtime
) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    schedule = await active_schedule(
        api, client, worker, starts_at=START, interval="biweekly", amount="12.340", currency="KWD"
    )
    done = await asyncio.gather(*(run_due(runtime, now=START) for _ in range(2)))
    assert sorted(done) == [0, 1]
    (run,) = await runs_of(runtime, schedule["id"])
    assert (run.status, run.attempts) == ("held", 1)
    payments = await payments_of(runtime, schedule["id"])
    assert [(p.status, p.amount, p.platform_fee) for p in payments] == [("held", 12340, 617)]
    assert await intents(runtime) == 1
    async with runtime.sessions() as session:
        booked = await session.scalars(select(RecurringRun.booking_id))
        assert len(set(booked.all())) == 1
        assert await session.get(User, client.id) is not None


async def test_the_worker_runs_the_job(api: Api, runtime: Runtime, worker: None) -> None:
    """`hp:run_recurring` as procrastinate runs it (deferred here rather than waiting for
    its minute), on the real clock: a start in the past is due at once."""
    client, pro = await api.user("client"), await api.user("worker")
    start = now() - timedelta(hours=1)
    schedule = await active_schedule(api, client, pro, starts_at=start, interval="weekly")
    async with transaction(runtime.sessions) as session:
        await jobs.defer(session, "hp:run_recurring", args={"timestamp": 0})

    async def held() -> bool:
        runs = await runs_of(runtime, schedule["id"])
        return bool(runs) and runs[0].status == "held"

    await eventually(held)
    shown = await api.get(f"/recurring-schedules/{schedule['id']}", client)
    assert datetime.fromisoformat(shown["next_run_at"]) == start + timedelta(days=7)
