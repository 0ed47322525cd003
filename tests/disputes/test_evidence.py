"""Chargeback evidence on the Stripe simulator, end to end over HTTP: a payment made and
released from the client's own address, the bank's chargeback opened through the
simulator (its signed charge.dispute.created through our inbox), the evidence previewed,
submitted with the admin's text, the dispute under review, then lost: exactly what is
taken back today. And the defined outcomes: no answer, a refusal, the 409s."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from handwork_payments.app import create_app
from handwork_payments.disputes import submission as submission_service
from handwork_payments.kit.clock import now
from handwork_payments.models import (
    Alert,
    DisputeEvidence,
    LedgerAccount,
    PaymentDispute,
    WebhookDelivery,
)
from handwork_payments.providers.base import ChargebackEvidence
from handwork_payments.providers.paypal import evidence as paypal_evidence
from handwork_payments.providers.simulated.paypal import SimulatedPayPal
from handwork_payments.providers.simulated.stripe import SimulatedStripe
from handwork_payments.providers.stripe_evidence import stripe_evidence
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as inbox
from tests.faults import payment_row, simulator
from tests.helpers import Api, Party
from tests.payments.flows import paypal_held

CLIENT_IP = "203.0.113.7"  # the client's device (documentation range, RFC 5737)
STAFF_IP = "198.51.100.20"  # where the worker and the admin act from


@pytest.fixture
async def apis(runtime: Runtime) -> AsyncIterator[tuple[Api, Api]]:
    """The service seen from the client's address and from everyone else's."""
    app = create_app(runtime)
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 50000)), base_url="http://test"
        )
        for ip in (CLIENT_IP, STAFF_IP)
    ]
    try:
        yield Api(clients[0], runtime), Api(clients[1], runtime)
    finally:
        for http in clients:
            await http.aclose()


async def process_deliveries(runtime: Runtime) -> None:
    """What the worker does with the deliveries the simulator made."""
    async with runtime.sessions() as session:
        pending = list(
            await session.scalars(
                select(WebhookDelivery.id).where(WebhookDelivery.status == "received")
            )
        )
    for delivery_id in pending:
        processed = await inbox.process(runtime, delivery_id)
        assert processed is not None and processed.status == "processed", processed


async def released_and_disputed(
    client_api: Api, staff: Api, amount: str = "100.00"
) -> tuple[Party, Party, dict[str, Any], dict[str, Any]]:
    """Paid from the client's address, completed by the worker, released by the client,
    then disputed by the client's bank: (client, worker, payment, our dispute)."""
    client, worker = await client_api.user("client"), await staff.user("worker")
    booking = await client_api.booking(client, worker, amount)
    r = await client_api.stripe_payment(client, booking)
    assert r.status_code == 201 and r.json()["status"] == "held", r.text
    payment = r.json()
    r = await staff.post(f"/bookings/{booking['id']}/complete", worker)
    assert r.status_code == 200, r.text
    r = await client_api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200 and r.json()["status"] == "released", r.text
    intent = payment["stripe_payment_id"]
    r = await staff.client.post(
        f"/api/v1/simulator/stripe/payment_intents/{intent}/dispute",
        json={"reason": "product_not_received"},
    )
    assert r.status_code == 200 and r.json()["status"] == "needs_response", r.text
    await process_deliveries(staff.runtime)
    (dispute,) = (await staff.get("/payments/disputes", client))["items"]
    assert (dispute["status"], dispute["payment_id"]) == ("open", payment["id"])
    return client, worker, payment, {**dispute, "provider": r.json()}


async def balances(runtime: Runtime, currency: str) -> dict[str, int]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(LedgerAccount).where(LedgerAccount.currency == currency)
        )
        return {row.code: row.balance for row in rows if row.balance}


async def submission(runtime: Runtime, dispute_id: int) -> DisputeEvidence:
    async with runtime.sessions() as session:
        row = await session.scalar(
            select(DisputeEvidence).where(DisputeEvidence.dispute_id == dispute_id)
        )
        assert row is not None
        return row


def evidence_url(dispute_id: int) -> str:
    return f"/api/v1/admin/chargebacks/{dispute_id}/evidence"


async def test_a_chargeback_answered_with_evidence_then_lost(apis: tuple[Api, Api]) -> None:
    client_api, staff = apis
    client, worker, payment, dispute = await released_and_disputed(client_api, staff)
    admin = await staff.admin()
    sim = simulator(staff.runtime)
    assert isinstance(sim, SimulatedStripe)
    today = now().date().isoformat()

    r = await staff.client.get(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert (preview["status"], preview["attempt"]) == (None, None)
    fields = preview["evidence"]
    assert fields["customer_email"] == client.email
    assert fields["customer_purchase_ip"] == CLIENT_IP
    assert fields["service_date"] == today
    assert fields["product_description"].startswith('"Fix the sink": a service booked on ')
    assert "for 100.00 USD" in fields["product_description"]
    assert f"Released to the worker on {today}" in fields["product_description"]
    activity = fields["access_activity_log"].splitlines()
    assert [line.split(" ", 4)[4] for line in activity] == [
        f"by the client Client (user #{client.id}) from IP {CLIENT_IP}",  # payment.created
        f"by the client Client (user #{client.id}) from IP {CLIENT_IP}",  # payment.held
        f"by the worker Worker (user #{worker.id})",  # booking.completed (no payment row)
        f"by the client Client (user #{client.id}) from IP {CLIENT_IP}",  # payment.released
    ]
    assert [line.split(" ")[3] for line in activity] == [
        "payment.created",
        "payment.held",
        "booking.completed",
        "payment.released",
    ]
    assert "Dispute history:\nDispute #" in fields["uncategorized_text"]
    assert "Chargeback (product_not_received)" in fields["uncategorized_text"]
    # Nothing was written by looking.
    async with staff.runtime.sessions() as session:
        assert (await session.scalars(select(DisputeEvidence))).all() == []

    text = "The client confirmed the sink works in a message on the day of the job."
    r = await staff.client.post(
        evidence_url(dispute["id"]), headers=admin.headers, json={"text": text}
    )
    assert r.status_code == 200, r.text
    submitted = r.json()
    assert (submitted["status"], submitted["attempt"], submitted["admin_text"]) == (
        "submitted",
        1,
        text,
    )
    sent = submitted["evidence"]
    assert sent["uncategorized_text"].startswith(f"Statement of the platform:\n{text}\n\n")
    # At Stripe (the simulator): the evidence as the adapter maps it, under review.
    held = await sim.object_data(dispute["provider"]["id"])
    assert held["status"] == "under_review"
    assert held["evidence_details"]["submission_count"] == 1
    assert held["evidence"] == stripe_evidence(ChargebackEvidence(**sent))
    assert held["evidence"]["customer_purchase_ip"] == CLIENT_IP
    (ours,) = (await staff.get("/payments/disputes", client))["items"]
    assert ours["status"] == "under_review"
    # Once is all.
    r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 409 and "submitted already" in r.json()["detail"], r.text

    # The bank decides against us: taken back exactly as without evidence.
    r = await staff.client.post(
        f"/api/v1/simulator/stripe/disputes/{dispute['provider']['id']}/close",
        json={"outcome": "lost"},
    )
    assert r.status_code == 200 and r.json()["status"] == "lost", r.text
    await process_deliveries(staff.runtime)
    row = await payment_row(staff.runtime, payment["id"])
    assert (row.status, row.refunded_amount, row.refunded_fee) == ("refunded", 10000, 500)
    assert (await staff.earnings(worker))["available_balance"] == "0.00"
    async with staff.runtime.sessions() as session:
        closed = await session.get(PaymentDispute, dispute["id"])
        assert closed is not None
        assert (closed.status, closed.outcome, closed.refund_amount) == ("closed", "refund", 10000)
        assert closed.provider_fee == 1500
    found = await balances(staff.runtime, "USD")
    # Stripe's 3.20 fee on the capture and its 15.00 dispute fee are ours to bear; the
    # 5.00 platform fee went back with the 100.00, the worker's 95.00 was taken back.
    assert found == {
        "provider_clearing:stripe:USD": 320 + 1500,
        "provider_fees:stripe:USD": -320,
        "platform_losses:USD": -1500,
    }
    r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 409, r.text

    # The client erased: the evidence keeps neither their email nor their address (a
    # name is replaced where it is a whole value, as everywhere erasure looks).
    r = await staff.post(f"/admin/users/{client.id}/erase", admin)
    assert r.status_code == 200, r.text
    row = await submission(staff.runtime, dispute["id"])
    kept = json.dumps(row.evidence)
    assert client.email not in kept and CLIENT_IP not in kept
    assert row.evidence["customer_name"].startswith("erased:")


@pytest.mark.parametrize("mode", ["timeout", "timeout_after_success"])
async def test_no_answer_leaves_the_submission_in_flight_until_sent_again(
    apis: tuple[Api, Api], mode: str
) -> None:
    """Submitted or not (the answer lost either way): the row stays `submitting` with the
    evidence it will send; the next POST sends exactly that under the same key, and
    Stripe (the simulator) counts one submission."""
    client_api, staff = apis
    _, _, _, dispute = await released_and_disputed(client_api, staff)
    admin = await staff.admin()
    sim = simulator(staff.runtime)
    await sim.inject_fault("submit_evidence", mode)
    r = await staff.client.post(
        evidence_url(dispute["id"]), headers=admin.headers, json={"text": "First words"}
    )
    assert r.status_code == 502 and "submit again" in r.json()["detail"], r.text
    row = await submission(staff.runtime, dispute["id"])
    assert (row.status, row.attempt, row.admin_text) == ("submitting", 1, "First words")
    r = await staff.client.get(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.json()["status"] == "submitting"
    assert r.json()["evidence"] == row.evidence  # what will be sent, not assembled anew
    # Other words would be another request under the same key: refused.
    r = await staff.client.post(
        evidence_url(dispute["id"]), headers=admin.headers, json={"text": "Second words"}
    )
    assert r.status_code == 409 and "other text" in r.json()["detail"], r.text

    r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text
    assert r.json()["evidence"] == row.evidence
    held = await sim.object_data(dispute["provider"]["id"])
    assert (held["status"], held["evidence_details"]["submission_count"]) == ("under_review", 1)


async def test_a_refusal_is_recorded_and_a_new_attempt_may_follow(
    apis: tuple[Api, Api],
) -> None:
    client_api, staff = apis
    _, _, _, dispute = await released_and_disputed(client_api, staff)
    admin = await staff.admin()
    sim = simulator(staff.runtime)
    await sim.inject_fault("submit_evidence", "error")
    r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 409 and "refused the evidence" in r.json()["detail"], r.text
    row = await submission(staff.runtime, dispute["id"])
    assert (row.status, row.attempt) == ("failed", 1)
    assert row.last_error == "Simulated failure of stripe submit_evidence"
    async with staff.runtime.sessions() as session:
        (alert,) = await session.scalars(select(Alert).where(Alert.kind == "evidence_refused"))
    assert alert.object_id == dispute["id"]
    (ours,) = (await staff.get("/payments/disputes", admin))["items"]
    assert ours["status"] == "open"  # not under review: nothing reached the bank

    r = await staff.client.post(
        evidence_url(dispute["id"]), headers=admin.headers, json={"text": "Again"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attempt"]) == ("submitted", 2)
    held = await sim.object_data(dispute["provider"]["id"])
    assert held["evidence_details"]["submission_count"] == 1


async def test_only_open_provider_chargebacks_take_evidence(
    apis: tuple[Api, Api],
) -> None:
    client_api, staff = apis
    admin = await staff.admin()
    # Unknown: 404.
    r = await staff.client.get(evidence_url(999999), headers=admin.headers)
    assert r.status_code == 404, r.text
    # A dispute opened on our API: our admins decide it, no provider takes evidence.
    client, _, payment = await client_api.held_payment("30.00")
    r = await client_api.post(
        "/payments/disputes",
        client,
        {"payment_id": payment["id"], "reason": "Late", "description": "Not done"},
    )
    assert r.status_code == 201, r.text
    ours = r.json()["id"]
    for method in ("GET", "POST"):
        r = await staff.client.request(method, evidence_url(ours), headers=admin.headers)
        assert r.status_code == 409 and "not a chargeback" in r.json()["detail"], r.text
    # A chargeback the bank decided before anyone answered it: closed, no evidence.
    _, _, _, dispute = await released_and_disputed(client_api, staff)
    r = await staff.client.post(
        f"/api/v1/simulator/stripe/disputes/{dispute['provider']['id']}/close",
        json={"outcome": "won"},
    )
    assert r.status_code == 200, r.text
    await process_deliveries(staff.runtime)
    r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 409 and "is closed" in r.json()["detail"], r.text
    # Decided once only.
    r = await staff.client.post(
        f"/api/v1/simulator/stripe/disputes/{dispute['provider']['id']}/close",
        json={"outcome": "lost"},
    )
    assert r.status_code == 409, r.text
    # Bad input changes nothing: unknown fields, empty text.
    for body in ({"txt": "x"}, {"text": ""}):
        r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers, json=body)
        assert r.status_code == 422, r.text
    async with staff.runtime.sessions() as session:
        assert (await session.scalars(select(DisputeEvidence))).all() == []


async def test_the_simulated_bank_disputes_captured_charges_once(apis: tuple[Api, Api]) -> None:
    client_api, staff = apis
    _, _, payment = await client_api.held_payment("20.00")
    url = f"/api/v1/simulator/stripe/payment_intents/{payment['stripe_payment_id']}/dispute"
    # Authorised only, nothing captured: no charge to dispute.
    r = await staff.client.post(url, json={"reason": "fraudulent"})
    assert r.status_code == 409 and "no captured charge" in r.json()["detail"], r.text
    r = await staff.client.post(url, json={"reason": "stolen_card"})
    assert r.status_code == 422, r.text
    r = await staff.client.post(
        "/api/v1/simulator/stripe/payment_intents/pi_unknown/dispute", json={}
    )
    assert r.status_code == 404, r.text
    _, _, _, dispute = await released_and_disputed(client_api, staff)
    intent = dispute["provider"]["payment_intent"]
    r = await staff.client.post(f"/api/v1/simulator/stripe/payment_intents/{intent}/dispute")
    assert r.status_code == 409 and "disputed already" in r.json()["detail"], r.text


async def test_the_worker_resumes_submissions_left_in_flight(apis: tuple[Api, Api]) -> None:
    """No admin comes back: once PROVIDER_OPERATION_STALE_SECONDS have passed, the sweep
    sends the same evidence under the same key; a chargeback decided meanwhile takes none,
    and its submission ends failed."""
    client_api, staff = apis
    runtime = staff.runtime
    admin = await staff.admin()
    sim = simulator(runtime)
    _, _, _, first = await released_and_disputed(client_api, staff)
    _, _, _, second = await released_and_disputed(client_api, staff)
    for dispute in (first, second):
        await sim.inject_fault("submit_evidence", "timeout")
        r = await staff.client.post(evidence_url(dispute["id"]), headers=admin.headers)
        assert r.status_code == 502, r.text
    r = await staff.client.post(
        f"/api/v1/simulator/stripe/disputes/{second['provider']['id']}/close",
        json={"outcome": "won"},
    )
    assert r.status_code == 200, r.text
    await process_deliveries(runtime)

    assert await submission_service.resume_stale(runtime, now=now()) == []  # not stale yet
    later = now() + timedelta(seconds=runtime.settings.provider_operation_stale_seconds + 1)
    assert await submission_service.resume_stale(runtime, now=later) == [first["id"]]
    row = await submission(runtime, first["id"])
    assert (row.status, row.attempt, row.submitted_by) == ("submitted", 1, admin.id)
    held = await sim.object_data(first["provider"]["id"])
    assert (held["status"], held["evidence_details"]["submission_count"]) == ("under_review", 1)
    row = await submission(runtime, second["id"])
    assert (row.status, row.last_error) == ("failed", "dispute closed before it was confirmed")
    assert await submission_service.resume_stale(runtime, now=later) == []


async def test_the_paypal_simulator_records_the_evidence(api: Api) -> None:
    """A PayPal chargeback (CUSTOMER.DISPUTE.CREATED naming the capture) on a released
    payment: the evidence goes to the PayPal simulator as provide-evidence's evidences."""
    client, _, payment = await paypal_held(api, "80.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    row = await payment_row(api.runtime, payment["id"])
    sim = simulator(api.runtime, "paypal")
    assert isinstance(sim, SimulatedPayPal)
    resource = {
        "dispute_id": "PP-D-9001",
        "create_time": "2026-11-27T10:00:00Z",
        "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
        "status": "OPEN",
        "dispute_amount": {"currency_code": "USD", "value": "80.00"},
        "disputed_transactions": [{"seller_transaction_id": row.provider_capture_id}],
    }
    body, headers = sim.paypal_event("CUSTOMER.DISPUTE.CREATED", resource)
    await inbox.receive(api.runtime, "paypal", headers, body)
    await process_deliveries(api.runtime)
    (dispute,) = (await api.get("/payments/disputes", client))["items"]
    admin = await api.admin()
    r = await api.client.post(evidence_url(dispute["id"]), headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text
    held = await sim.object_data("PP-D-9001")
    assert held["status"] == "UNDER_REVIEW"
    assert held["evidences"] == paypal_evidence.evidences(
        ChargebackEvidence(**r.json()["evidence"])
    )
    assert held["evidences"][0]["evidence_type"] == "PROOF_FOR_SOFTWARE_OR_SERVICE_DELIVERED"
