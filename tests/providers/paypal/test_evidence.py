"""Chargeback evidence through the real PayPal adapter against the double: provide-evidence
as a multipart request, validated against customer_disputes_v1.json (the request, the
answer, and each evidence of its `input` part against the spec's `evidence` schema under
write rules), PayPal-Request-Id from our ids, a lost answer replayed once."""

from __future__ import annotations

import json
from dataclasses import replace

from sqlalchemy import select

from handwork_payments.models import DisputeEvidence
from handwork_payments.providers.base import ChargebackEvidence
from handwork_payments.providers.paypal import evidence as paypal_evidence
from tests.helpers import Api
from tests.peers.paypal_double import PayPalDouble, SpecValidator
from tests.providers.paypal.harness import assert_spec_checked, calls, paypal
from tests.providers.paypal.test_chargebacks import (
    captured_in_escrow,
    deliver_dispute,
    dispute_resource,
    dispute_rows,
)

EVIDENCE = ChargebackEvidence(
    product_description='"Fix the sink": a service booked on 2026-11-20.',
    customer_name="Client",
    customer_email="client@example.com",
    customer_purchase_ip="203.0.113.7",
    service_date="2026-11-21",
    access_activity_log="2026-11-20 10:00:00 UTC payment.created by the client",
    uncategorized_text="x" * 4500,
)


def test_long_text_is_cut_into_notes_of_the_specs_length() -> None:
    found = paypal_evidence.evidences(EVIDENCE)
    assert [e["evidence_type"] for e in found] == [
        "PROOF_FOR_SOFTWARE_OR_SERVICE_DELIVERED",
        "OTHER",
        "OTHER",
        "OTHER",
    ]
    assert [len(e["notes"]) for e in found[1:]] == [2000, 2000, 500]
    assert "Customer IP at payment: 203.0.113.7" in found[0]["notes"]
    longest = paypal_evidence.evidences(replace(EVIDENCE, uncategorized_text="y" * 30_000))
    assert len(longest) == 1 + paypal_evidence.MAX_OTHER_NOTES
    assert all(len(e["notes"]) <= 2000 for e in longest)
    assert longest[-1]["notes"].endswith("[...cut to the provider's limit]")


async def test_evidence_is_provided_as_the_disputes_spec_describes(
    api: Api, double: PayPalDouble, paypal_specs: SpecValidator
) -> None:
    _client, _pro, payment, capture_id = await captured_in_escrow(api, double, "100.00")
    resource = dispute_resource("PP-D-7001", capture_id, payment["id"], "100.00")
    await deliver_dispute(api, double, paypal_specs, "CUSTOMER.DISPUTE.CREATED", resource)
    double.add_dispute(resource)
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    admin = await api.admin()
    url = f"/api/v1/admin/chargebacks/{dispute.id}/evidence"

    # The answer is lost once: the row stays submitting, the next POST replays it.
    double.fail_next("disputes.provide_evidence", "timeout_after")
    r = await api.client.post(url, headers=admin.headers, json={"text": "Done on the day."})
    assert r.status_code == 502, r.text
    async with api.runtime.sessions() as session:
        row = await session.scalar(
            select(DisputeEvidence).where(DisputeEvidence.dispute_id == dispute.id)
        )
    assert row is not None and row.status == "submitting"
    r = await api.client.post(url, headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text

    sent = calls(double, "disputes.provide_evidence")
    key = paypal(api).ids.key(f"dispute-{dispute.id}-evidence-1")
    assert [(c.request_id, c.replayed) for c in sent] == [(key, False), (key, True)]
    held = double.disputes["PP-D-7001"]
    assert held["status"] == "UNDER_REVIEW"
    types = [e["evidence_type"] for e in held["evidences"]]
    assert types[0] == "PROOF_FOR_SOFTWARE_OR_SERVICE_DELIVERED" and set(types[1:]) == {"OTHER"}
    assert held["evidences"][1]["notes"].startswith("Statement of the platform:\nDone on the day.")
    assert json.loads(json.dumps(held["evidences"])) == paypal_evidence.evidences(
        ChargebackEvidence(**r.json()["evidence"])
    )
    [dispute] = await dispute_rows(api.runtime, payment["id"])
    assert dispute.status == "under_review"
    assert_spec_checked(double, "disputes.provide_evidence")
    if double.validator is not None and double.validator.enabled:
        # Without the specs (a checkout beside no ../shared) the fixture has warned and
        # nothing was validated, as assert_spec_checked says.
        evidences = paypal_specs.report.operations["schema:disputes#evidence"]
        assert evidences >= len(held["evidences"])


async def test_the_specs_catch_an_evidence_type_paypal_does_not_know(
    paypal_specs: SpecValidator,
) -> None:
    """The validation can fail: an evidence type outside the spec's enum, notes too long, and
    a JSON body where the spec takes multipart/form-data only."""
    for bad in (
        {"evidence_type": "PROOF_OF_GOOD_VIBES", "notes": "x"},
        {"evidence_type": "OTHER", "notes": "x" * 2001},
    ):
        problems = paypal_specs.validate_schema("disputes", "evidence", bad, sent=True)
        assert len(problems) == 1 or not paypal_specs.enabled, problems
        paypal_specs.forget(problems)
    if not paypal_specs.enabled:
        return
    path = "/v1/customer/disputes/PP-D-1/provide-evidence"
    answer = json.dumps({"links": [{"href": f"https://x{path}", "rel": "self"}]}).encode()
    problems = paypal_specs.validate(
        "disputes.provide_evidence",
        "POST",
        path,
        [],
        {"content-type": "application/json", "authorization": "Bearer t"},
        json.dumps({"evidences": [{"evidence_type": "OTHER", "notes": "x"}]}).encode(),
        200,
        {"content-type": "application/json"},
        answer,
    )
    assert len(problems) == 1 and "multipart/form-data" in problems[0], problems
    paypal_specs.forget(problems)
