"""Chargeback evidence through the real Stripe adapter (the official SDK) against the
request-level double, which checks the update against Stripe's DisputeUpdateParams
(known text fields only, their limits, `submit`): the request exactly as sent, its
idempotency key, and the answer lost (replayed under its key, or found submitted once the
key is forgotten)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from handwork_payments.models import DisputeEvidence
from tests.helpers import Api, Party
from tests.peers.stripe_double import StripeDouble
from tests.providers.stripe.harness import PREFIX, deliver

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


async def disputed(api: Api, double: StripeDouble, dispute_id: str) -> tuple[Party, int]:
    """A released payment the client's bank disputes: (client, our dispute id)."""
    client, _, payment = await api.held_payment("100.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    opened = double.add_dispute(payment["stripe_payment_id"], 10000, dispute_id)
    await deliver(api, "charge.dispute.created", opened)
    (dispute,) = (await api.get("/payments/disputes", client))["items"]
    return client, dispute["id"]


async def submit(api: Api, admin: Party, dispute_id: int, **body: Any) -> Any:
    return await api.client.post(
        f"/api/v1/admin/chargebacks/{dispute_id}/evidence", headers=admin.headers, json=body
    )


async def test_evidence_is_sent_as_stripes_text_fields_and_submitted(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    client, dispute_id = await disputed(api, double, "du_evidence1")
    admin = await api.admin()
    r = await submit(api, admin, dispute_id, text="The job was done.")
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text

    (request,) = double.requests("POST", "/v1/disputes/du_evidence1")
    assert request.idempotency_key == f"{PREFIX}-dispute-{dispute_id}-evidence-1"
    assert request.form["submit"] == "true"
    sent = {k[len("evidence[") : -1]: v for k, v in request.form.items() if k != "submit"}
    assert sorted(sent) == [
        "access_activity_log",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "product_description",
        "uncategorized_text",
    ]  # no service_date: the booking was never marked done
    assert sent["customer_email_address"] == client.email
    assert sent["customer_purchase_ip"] == "127.0.0.1"  # the test client's address
    assert sent["uncategorized_text"].startswith("Statement of the platform:\nThe job was done.")
    dispute = double.disputes["du_evidence1"]
    assert (dispute["status"], dispute["evidence_details"]["submission_count"]) == (
        "under_review",
        1,
    )
    assert dispute["evidence"] == sent


@pytest.mark.parametrize("forgotten", [False, True])
async def test_a_lost_answer_is_resumed_without_a_second_submission(
    dbl: Api, double: StripeDouble, forgotten: bool
) -> None:
    """The update took effect, its answer never came: the row stays submitting. Asked again
    under the same key, Stripe replays it; a day later (the key forgotten) Stripe refuses
    the update of a dispute under review, and the adapter finds it submitted."""
    api = dbl
    _, dispute_id = await disputed(api, double, "du_evidence2")
    admin = await api.admin()
    double.hang_next("POST", "/v1/disputes/du_evidence2", after_effect=True)
    r = await submit(api, admin, dispute_id)
    assert r.status_code == 502, r.text
    async with api.runtime.sessions() as session:
        status = await session.scalar(
            select(DisputeEvidence.status).where(DisputeEvidence.dispute_id == dispute_id)
        )
    assert status == "submitting"
    if forgotten:
        double.forget_idempotency_keys()
    r = await submit(api, admin, dispute_id)
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text
    assert double.disputes["du_evidence2"]["evidence_details"]["submission_count"] == 1
    posts = double.requests("POST", "/v1/disputes/du_evidence2")
    assert len(posts) == 2 and posts[0].form == posts[1].form
    assert len(double.requests("GET", "/v1/disputes/du_evidence2")) == (1 if forgotten else 0)
