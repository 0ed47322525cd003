"""Risk decisions end to end, through the API: a block answers 402 with nothing held, a
review keeps the money still (release, auto-release and payout processing refused) until
an admin approves it or rejects it (a full refund; a payout failed, its amount back).
Tests set RISK_MODE=enforce themselves: the tests' settings are development's (observe)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from handwork_payments.kit.errors import UnderReview
from handwork_payments.models import AuditLog, Booking, Payment
from handwork_payments.payments import background, service
from handwork_payments.providers.base import HoldRef
from handwork_payments.runtime import Runtime
from tests.helpers import Api, Party
from tests.http.test_metrics import scrape, value
from tests.payments.flows import paypal_held
from tests.risk.flows import party, pay, payment_row, reviews_of, risk_settings

NEW_PAIR = "new_client_new_worker: both accounts registered < 24 h ago"
WAITS = "This payment waits for a risk review; its money cannot move until an admin decides"


async def held_for_review(api: Api, runtime: Runtime) -> tuple[Party, Party, Party, Any]:
    """Enforced: a new client pays a new worker (distinct addresses): held, in review."""
    client = await party(api, "client", "198.51.100.1")
    worker = await party(api, "worker", "198.51.100.2")
    r = await pay(api, client, worker)
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["status"] == "held" and payment["risk_level"] is None  # not the client's
    return client, worker, await api.admin(), payment


async def review_id(api: Api, admin: Party, object_type: str, object_id: int) -> int:
    items = (await api.get("/admin/reviews", admin, status="open"))["items"]
    found = [i for i in items if (i["object_type"], i["object_id"]) == (object_type, object_id)]
    assert len(found) == 1, items
    result: int = found[0]["id"]
    return result


async def test_review_refuses_release_until_approved(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="enforce"):
        client, worker, admin, payment = await held_for_review(api, runtime)
        shown = await api.get(f"/payments/{payment['id']}", admin)
        assert (shown["risk_level"], shown["risk_reasons"]) == ("elevated", [NEW_PAIR])
        queue = await api.get("/admin/reviews", admin, status="open")
        assert [
            (i["object_type"], i["object_id"], i["status"], i["risk_level"], i["reasons"])
            for i in queue["items"]
        ] == [("payment", payment["id"], "open", "elevated", [NEW_PAIR])]
        alerts = (await api.get("/admin/alerts", admin))["items"]
        assert [(a["kind"], a["object_id"]) for a in alerts if a["kind"] == "risk_review"] == [
            ("risk_review", payment["id"])
        ]

        assert (await api.post(f"/bookings/{payment['booking_id']}/complete", worker)).is_success
        r = await api.post(f"/payments/{payment['id']}/release", client)
        assert (r.status_code, r.json()["detail"]) == (409, WAITS)
        assert (await api.earnings(worker))["available_balance"] == "0.00"

        review = queue["items"][0]["id"]
        r = await api.post(f"/admin/reviews/{review}/approve", admin)
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["decided_by"]) == ("approved", admin.id)
        assert r.json()["decided_at"] is not None
        assert (await api.post(f"/admin/reviews/{review}/approve", admin)).status_code == 409

        r = await api.post(f"/payments/{payment['id']}/release", client)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "released"
        assert (await api.earnings(worker))["available_balance"] == "142.50"


async def test_reject_refunds_the_payment_in_full(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="enforce"):
        client, worker, admin, payment = await held_for_review(api, runtime)
        review = await review_id(api, admin, "payment", payment["id"])
        r = await api.post(f"/admin/reviews/{review}/reject", admin, {"reason": "Stolen card"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["decision_reason"]) == ("rejected", "Stolen card")
        shown = await api.get(f"/payments/{payment['id']}", admin)
        assert (shown["status"], shown["refunded_amount"], shown["refund_reason"]) == (
            "refunded",
            "150.00",
            "Risk review: Stolen card",
        )
        assert (await api.earnings(worker))["available_balance"] == "0.00"
        r = await api.post(f"/payments/{payment['id']}/release", client)
        assert r.status_code == 409
        # Rejecting again resumes nothing: the refund is done.
        assert (await api.post(f"/admin/reviews/{review}/reject", admin)).status_code == 200
        assert (await payment_row(runtime, payment["id"])).refunded_amount == 15_000


async def test_auto_release_skips_a_payment_in_review(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="enforce"):
        _, worker, admin, payment = await held_for_review(api, runtime)
        assert (await api.post(f"/bookings/{payment['booking_id']}/complete", worker)).is_success
        deadline = (await payment_row(runtime, payment["id"])).auto_release_at
        assert deadline is not None
        late = deadline + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)
        report = await background.release_overdue(runtime, now=late)
        assert (report.released, report.not_done) == ([], {})  # skipped, not failed
        # The booking's own auto-release job releases as the system: refused, a domain
        # error the job logs (payments/tasks.py), never a retry.
        with pytest.raises(UnderReview):
            await service.release(runtime, payment["id"], actor=None)
        assert (await payment_row(runtime, payment["id"])).status == "held"

        review = await review_id(api, admin, "payment", payment["id"])
        assert (await api.post(f"/admin/reviews/{review}/approve", admin)).status_code == 200
        report = await background.release_overdue(runtime, now=late)
        assert report.released == [payment["id"]]
        assert (await api.earnings(worker))["available_balance"] == "142.50"


async def test_a_block_answers_402_and_holds_nothing(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="enforce", risk_client_payments_per_hour=2):
        client = await party(api, "client", "198.51.100.3")
        worker = await party(api, "worker", "198.51.100.4")
        for _ in range(2):
            assert (await pay(api, client, worker)).status_code == 201
        booking = await api.booking(client, worker)
        r = await api.stripe_payment(client, booking)
        assert r.status_code == 402
        detail = r.json()["detail"]
        assert detail == "The payment cannot be accepted; contact support if this is unexpected"
        async with runtime.sessions() as session:
            assert (
                await session.scalar(
                    select(func.count()).where(Payment.booking_id == booking["id"])
                )
                == 0
            )
            assert (await session.get(Booking, booking["id"])).status == "pending_payment"  # type: ignore[union-attr]
            entries = (
                await session.scalars(
                    select(AuditLog).where(AuditLog.action == "payment.risk_blocked")
                )
            ).all()
        assert [(e.actor_id, e.object_type, e.object_id) for e in entries] == [
            (client.id, "booking", booking["id"])
        ]
        assert entries[0].after == {
            "risk_level": "highest",
            "reasons": ["client_velocity_hour: 3 payments in an hour > 2", NEW_PAIR],
        }


async def test_observe_records_but_holds_nothing(api: Api, runtime: Runtime) -> None:
    assert runtime.settings.risk_mode_effective == "observe"
    client, worker, payment = await api.held_payment()  # both from 127.0.0.1, both new
    admin = await api.admin()
    shown = await api.get(f"/payments/{payment['id']}", admin)
    assert shown["risk_level"] == "elevated"
    assert shown["risk_reasons"] == [NEW_PAIR, "same_person: client and worker share ip"]
    assert await reviews_of(runtime, "payment", payment["id"]) == []
    assert (await api.post(f"/payments/{payment['id']}/release", client)).status_code == 200
    assert (await api.earnings(worker))["available_balance"] == "142.50"


async def test_off_runs_no_rule(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="off"):
        _, _, payment = await api.held_payment()
        row = await payment_row(runtime, payment["id"])
        assert (row.risk_level, row.risk_reasons) == (None, [])


async def test_radar_elevated_goes_to_review(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="enforce", risk_new_account_hours=0):
        client = await party(api, "client", "198.51.100.5")
        worker = await party(api, "worker", "198.51.100.6")
        plain = (await pay(api, client, worker)).json()
        radar = (await pay(api, client, worker, payment_method="pm_card_riskLevelElevated")).json()
        assert await reviews_of(runtime, "payment", plain["id"]) == []
        assert (await payment_row(runtime, plain["id"])).risk_level == "normal"
        [review] = await reviews_of(runtime, "payment", radar["id"])
        assert (review.status, review.risk_level, review.reasons) == (
            "open",
            "elevated",
            ["provider_verdict: the provider rates it elevated"],
        )
        highest = (await pay(api, client, worker, payment_method="pm_card_riskLevelHighest")).json()
        [review] = await reviews_of(runtime, "payment", highest["id"])
        assert review.risk_level == "highest"


async def test_one_card_on_two_client_accounts_paying_one_worker(
    api: Api, runtime: Runtime
) -> None:
    async with risk_settings(runtime, risk_mode="enforce", risk_new_account_hours=0):
        first = await party(api, "client", "198.51.100.7")
        second = await party(api, "client", "198.51.100.8")
        worker = await party(api, "worker", "198.51.100.9")
        one = (await pay(api, first, worker)).json()
        two = (await pay(api, second, worker)).json()
        assert await reviews_of(runtime, "payment", one["id"]) == []
        [review] = await reviews_of(runtime, "payment", two["id"])
        assert review.reasons == [
            "shared_card: another client account paid this worker with this card"
        ]


async def test_collusion_ends_in_review_not_in_a_payout(api: Api, runtime: Runtime) -> None:
    """One person as client and worker: fresh accounts from one address, the worker paid
    out to the client's email. The payment is reviewed; approved by mistake and released,
    the payout request is reviewed too, and processing it is refused."""
    async with risk_settings(runtime, risk_mode="enforce"):
        client = await party(api, "client", "203.0.113.9")
        worker = await party(api, "worker", "203.0.113.9")
        admin = await api.admin()
        r = await api.client.put(
            "/api/v1/payments/payout-methods",
            json={"paypal_email": client.email},
            headers=worker.headers,
        )
        assert r.status_code == 200, r.text
        payment = (await pay(api, client, worker)).json()
        [review] = await reviews_of(runtime, "payment", payment["id"])
        assert review.reasons == [
            NEW_PAIR,
            "same_person: client and worker share destination, ip",
        ]
        assert (await api.post(f"/admin/reviews/{review.id}/approve", admin)).status_code == 200
        assert (await api.post(f"/payments/{payment['id']}/release", client)).status_code == 200
        assert (await api.earnings(worker))["available_balance"] == "142.50"

        r = await api.post(
            "/payments/payouts/request", worker, {"amount": "142.50", "payment_method": "paypal"}
        )
        assert r.status_code == 201, r.text
        payout = r.json()
        [payout_review] = await reviews_of(runtime, "payout", payout["id"])
        assert (payout_review.status, payout_review.reasons) == (
            "open",
            [
                "first_payout: the worker's first payout",
                "new_worker_payout: worker registered < 7 days ago",
                "paid_by_self: worker shares destination, ip with a client",
            ],
        )
        r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
        assert (r.status_code, r.json()["detail"]) == (
            409,
            "This payout waits for a risk review; its money cannot move until an admin decides",
        )
        assert (await api.get("/payments/payouts", worker))["items"][0]["status"] == "pending"
        assert (await api.earnings(worker))["available_balance"] == "0.00"

        r = await api.post(f"/admin/reviews/{payout_review.id}/reject", admin, {"reason": "Self"})
        assert r.status_code == 200, r.text
        shown = (await api.get("/payments/payouts", worker))["items"][0]
        assert (shown["status"], shown["failure_reason"]) == ("failed", "risk review: Self")
        assert (await api.earnings(worker))["available_balance"] == "142.50"


async def test_an_approved_payout_is_processed(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_mode="enforce", risk_new_account_hours=0):
        client = await party(api, "client", "198.51.100.10")
        worker = await party(api, "worker", "198.51.100.11")
        admin = await api.admin()
        payment = (await pay(api, client, worker)).json()
        assert (await api.post(f"/payments/{payment['id']}/release", client)).status_code == 200
        r = await api.client.put(
            "/api/v1/payments/payout-methods",
            json={"stripe_account_id": "acct_1Risk"},
            headers=worker.headers,
        )
        assert r.status_code == 200, r.text
        body = {"amount": "100.00", "payment_method": "stripe"}
        payout = (await api.post("/payments/payouts/request", worker, body)).json()
        review = await review_id(api, admin, "payout", payout["id"])
        assert (await api.post(f"/admin/reviews/{review}/approve", admin)).status_code == 200
        r = await api.post(f"/payments/payouts/{payout['id']}/process", admin)
        assert (r.status_code, r.json()["status"]) == (200, "processing")
        assert (await api.earnings(worker))["available_balance"] == "42.50"


async def test_a_paypal_payment_in_review(api: Api, runtime: Runtime) -> None:
    """The PayPal path (approve, execute) holds under review the same way; PayPal's Seller
    Protection (the simulator's ELIGIBLE) is read from the authorisation and adds nothing."""
    async with risk_settings(runtime, risk_mode="enforce"):
        client, _, payment = await paypal_held(api)
        hold = await runtime.providers.paypal.get_hold(HoldRef(payment["paypal_payment_id"]))
        assert hold.seller_protection == "ELIGIBLE"
        [review] = await reviews_of(runtime, "payment", payment["id"])
        assert review.reasons == [NEW_PAIR, "same_person: client and worker share ip"]
        r = await api.post(f"/payments/{payment['id']}/release", client)
        assert (r.status_code, r.json()["detail"]) == (409, WAITS)


async def test_observe_counts_a_block_it_did_not_enforce(api: Api, runtime: Runtime) -> None:
    async with risk_settings(runtime, risk_client_payments_per_hour=1):
        client = await party(api, "client", "198.51.100.12")
        worker = await party(api, "worker", "198.51.100.13")
        first, second = [(await pay(api, client, worker)).json() for _ in range(2)]
        assert (first["status"], second["status"]) == ("held", "held")  # nothing held back
        row = await payment_row(runtime, second["id"])
        assert (row.risk_level, row.risk_enforced) == ("highest", False)
        assert row.risk_reasons[0] == "client_velocity_hour: 2 payments in an hour > 1"
        samples = await scrape(api)
        assert value(samples, "handwork_risk_decisions_total", outcome="block", mode="observe") == 1
        assert (
            value(samples, "handwork_risk_decisions_total", outcome="review", mode="observe") == 1
        )
