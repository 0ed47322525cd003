"""Events to the marketplace: every state change in the outbox in its own transaction,
delivered once to a receiver that verifies the signature, redelivered after an outage with
the same id, dead after the last attempt and redelivered by an admin."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from handwork_payments.events.signing import signature, verify
from handwork_payments.models import Alert, EventStatus, MarketplaceEvent
from handwork_payments.runtime import Runtime
from handwork_payments.worker import running_worker
from tests.conftest import make_settings
from tests.events.receiver import SECRET, Receiver, running_receiver
from tests.faults import earner, requested
from tests.helpers import Api, eventually


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def marketplace_runtime(database_url: str, url: str, **overrides: Any) -> Runtime:
    settings = make_settings(
        database_url,
        marketplace_webhook_url=url,
        marketplace_webhook_secret=SECRET,
        marketplace_webhook_retry_base_seconds=0.2,
        marketplace_webhook_retry_max_seconds=0.5,
        worker_poll_seconds=0.1,
        **overrides,
    )
    return Runtime.build(settings, database_url)


@pytest.fixture
async def delivering(
    runtime: Runtime, database_url: str, receiver: Receiver
) -> AsyncIterator[Runtime]:
    """A worker whose runtime delivers to the receiver (the API's own runtime does not
    need the setting: events are written whatever it says)."""
    del runtime  # after conftest's cleaning
    built = marketplace_runtime(database_url, receiver.url)
    async with running_worker(built, concurrency=2, name="events"):
        yield built
    await built.aclose()


async def events(runtime: Runtime) -> list[MarketplaceEvent]:
    async with runtime.sessions() as session:
        rows = await session.execute(select(MarketplaceEvent).order_by(MarketplaceEvent.id))
        return list(rows.scalars())


async def all_delivered(runtime: Runtime, count: int) -> bool:
    rows = await events(runtime)
    return len(rows) == count and all(e.status == EventStatus.DELIVERED for e in rows)


def test_a_signature_verifies_and_a_changed_body_or_old_timestamp_does_not() -> None:
    header = signature(b'{"id":"evt_1"}', SECRET, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    assert verify(b'{"id":"evt_1"}', header, SECRET, now=1_800_000_100)
    assert not verify(b'{"id":"evt_2"}', header, SECRET, now=1_800_000_100)
    assert not verify(b'{"id":"evt_1"}', header, "another", now=1_800_000_100)
    assert not verify(b'{"id":"evt_1"}', header, SECRET, now=1_800_000_301)


async def test_every_state_change_is_delivered_once_signed(
    api: Api, runtime: Runtime, receiver: Receiver, delivering: Runtime
) -> None:
    # Held, refunded in part, released: the worker's share becomes available.
    client, worker, paid = await api.held_payment("100.00")
    r = await api.post(
        "/payments/refund",
        worker,
        {"payment_id": paid["id"], "amount": "10.00", "reason": "One tap less"},
    )
    assert r.status_code == 200, r.text
    r = await api.post(f"/payments/{paid['id']}/release", client)
    assert r.status_code == 200, r.text
    # Declined.
    booking = await api.booking(client, worker, "20.00")
    r = await api.stripe_payment(client, booking, payment_method="pm_card_chargeDeclined")
    assert r.status_code == 402, r.text
    # Disputed and resolved with a split.
    _, _, disputed = await api.held_payment("50.00")
    admin = await api.admin()
    r = await api.post(
        "/payments/disputes",
        await api.user("client"),
        {"payment_id": disputed["id"], "reason": "x", "description": "y"},
    )
    assert r.status_code == 404, r.text  # a stranger's dispute: nothing emitted
    dispute_client = await _party_of(api, disputed)
    r = await api.post(
        "/payments/disputes",
        dispute_client,
        {"payment_id": disputed["id"], "reason": "Late", "description": "Two days late"},
    )
    assert r.status_code == 201, r.text
    dispute_id = r.json()["id"]
    r = await api.post(
        f"/payments/disputes/{dispute_id}/resolve",
        admin,
        {"outcome": "split", "refund_amount": "20.00", "resolution_notes": "Half done"},
    )
    assert r.status_code == 200, r.text

    expected = [
        "payment.held", "payment.refunded", "payment.released", "balance.available",
        "payment.failed",
        "payment.held", "dispute.opened", "payment.refunded", "payment.released",
        "balance.available", "dispute.resolved",
    ]  # fmt: skip
    await eventually(lambda: all_delivered(runtime, len(expected)))
    rows = await events(runtime)
    assert [e.type for e in rows] == expected
    # Once each, every signature good, the ids the outbox holds.
    assert sorted(receiver.ids()) == sorted(e.public_id for e in rows)
    assert receiver.refused_signatures == 0
    assert all(e.attempts == 1 for e in rows)

    refunds = receiver.of_type("payment.refunded")
    assert [e["data"]["refund"]["amount"] for e in refunds] == ["10.00", "20.00"]
    assert refunds[0]["data"]["refunded_amount"] == "10.00"
    assert refunds[0]["data"]["status"] == "held"
    balances = receiver.of_type("balance.available")
    # 100.00 - 10.00 refunded = 90.00 held, fee 5.00 - 0.50 = 4.50: share 85.50.
    assert [(b["data"]["amount"], b["data"]["available_balance"]) for b in balances] == [
        ("85.50", "85.50"),
        # 50.00 - 20.00 = 30.00, fee 2.50 - 1.00 = 1.50: share 28.50 (another worker).
        ("28.50", "28.50"),
    ]
    (resolved,) = receiver.of_type("dispute.resolved")
    assert resolved["data"]["outcome"] == "split" and resolved["data"]["status"] == "resolved"
    (held,) = [e for e in receiver.of_type("payment.held") if e["data"]["id"] == paid["id"]]
    assert held["data"]["amount"] == "100.00" and held["data"]["status"] == "held"
    assert set(held) == {"id", "type", "created", "data"}
    assert isinstance(held["created"], int)


async def _party_of(api: Api, payment: dict[str, Any]) -> Any:
    """The client of a payment made by `held_payment` (it returns the parties first; this
    test made several): log in as the booking's client."""
    from sqlalchemy import text

    async with api.runtime.sessions() as session:
        email = (
            await session.execute(
                text(
                    "SELECT u.email FROM users u JOIN bookings b ON b.client_id = u.id "
                    "WHERE b.id = :b"
                ),
                {"b": payment["booking_id"]},
            )
        ).scalar_one()
    from tests.helpers import Party

    headers = await api.login(email)
    me = await api.client.get("/api/v1/auth/me", headers=headers)
    return Party(me.json()["id"], email, headers)


async def test_a_payout_completed_is_an_event(
    api: Api, runtime: Runtime, receiver: Receiver, delivering: Runtime
) -> None:
    worker, admin = await earner(api, "100.00")
    payout = await requested(api, worker, "30.00", "stripe")
    r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    assert r.status_code == 200, r.text

    async def completed() -> list[dict[str, Any]]:
        return receiver.of_type("payout.completed")

    (event,) = await eventually(completed)
    assert event["data"]["id"] == payout["id"]
    assert event["data"]["amount"] == "30.00" and event["data"]["status"] == "completed"


async def test_an_outage_is_retried_with_the_same_id_until_the_receiver_is_back(
    api: Api, runtime: Runtime, receiver: Receiver, delivering: Runtime
) -> None:
    receiver.down = True
    await api.held_payment("40.00")

    async def retried() -> bool:
        (event,) = await events(runtime)
        return event.status == EventStatus.FAILED and event.attempts >= 2

    await eventually(retried)
    (failing,) = await events(runtime)
    assert failing.last_error is not None and failing.last_error.startswith("HTTP 503")
    assert failing.next_attempt_at is not None
    assert receiver.ids() == []

    receiver.down = False
    await eventually(lambda: all_delivered(runtime, 1))
    (event,) = await events(runtime)
    assert receiver.ids() == [event.public_id]
    assert event.attempts == receiver.attempts_while_down + 1


async def test_a_dead_event_has_an_alert_and_an_admin_redelivers_it(
    api: Api, runtime: Runtime, database_url: str, receiver: Receiver
) -> None:
    receiver.down = True
    built = marketplace_runtime(database_url, receiver.url, marketplace_webhook_max_attempts=2)
    async with running_worker(built, concurrency=2, name="events-dead"):
        await api.held_payment("40.00")

        async def dead() -> bool:
            rows = await events(runtime)
            return bool(rows) and rows[0].status == EventStatus.DEAD

        await eventually(dead)
        (event,) = await events(runtime)
        assert event.attempts == 2
        async with runtime.sessions() as session:
            (found,) = (await session.execute(select(Alert))).scalars()
        assert (found.kind, found.object_type, found.object_id) == ("event_dead", "event", event.id)

        admin = await api.admin()
        listed = await api.get("/admin/events", admin, status="dead")
        assert [e["public_id"] for e in listed["items"]] == [event.public_id]
        receiver.down = False
        r = await api.post(f"/admin/events/{event.id}/redeliver", admin)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "pending"
        await eventually(lambda: all_delivered(runtime, 1))
    await built.aclose()
    assert receiver.ids() == [event.public_id]
    r = await api.post("/admin/events/999999/redeliver", admin)
    assert r.status_code == 404, r.text


async def test_a_refused_change_writes_no_event(api: Api, runtime: Runtime) -> None:
    client, _, paid = await api.held_payment("30.00")
    # Released twice: the second is refused (409) and must write nothing.
    assert (await api.post(f"/payments/{paid['id']}/release", client)).status_code == 200
    assert (await api.post(f"/payments/{paid['id']}/release", client)).status_code == 409
    assert [e.type for e in await events(runtime)] == [
        "payment.held",
        "payment.released",
        "balance.available",
    ]


def test_the_readme_receiver_snippet_verifies_a_delivery() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Events to the marketplace", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 10
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    body = b'{"id":"evt_1","type":"payment.held"}'
    header = signature(body, SECRET, int(time.time()))
    assert namespace["verify"](body, header, SECRET)
    assert not namespace["verify"](body + b" ", header, SECRET)
    assert not namespace["verify"](body, signature(body, SECRET, int(time.time()) - 600), SECRET)
