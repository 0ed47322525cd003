"""Alerts: a failed payment, a dispute opened, a failed payout and a dead-lettered webhook
each leave a row in GET /admin/alerts and a warning-level structured log event whose
fields are JSON as they are (what LOG_FORMAT=json prints)."""

from __future__ import annotations

import json
import logging

import pytest

from handwork_payments.cli import JsonFormatter
from handwork_payments.payouts import service as payouts
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.conftest import make_settings
from tests.faults import earner, requested, simulator
from tests.helpers import Api


async def test_each_kind_of_alert_is_listed_and_logged_as_a_structured_event(
    api: Api, runtime: Runtime, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handwork_payments.alerts")
    # A declined card.
    client, pro = await api.user("client"), await api.user("worker")
    r = await api.stripe_payment(
        client, await api.booking(client, pro, "10.00"), "pm_card_chargeDeclined"
    )
    assert r.status_code == 402
    # A dispute.
    held_client, _, held = await api.held_payment("20.00")
    r = await api.post(
        "/payments/disputes",
        held_client,
        {"payment_id": held["id"], "reason": "No show", "description": "Never came"},
    )
    assert r.status_code == 201, r.text
    dispute_id = r.json()["id"]
    # A payout the provider refuses.
    worker, admin = await earner(api)
    payout = await requested(api, worker, "10.00", "stripe")
    await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    await simulator(runtime).inject_fault("send_payout", "error")
    await payouts.send(runtime, payout["id"])
    # A webhook whose processing fails at its last attempt (WEBHOOK_MAX_ATTEMPTS=1): an
    # event about a pending payment asks Stripe for the intent, and Stripe fails.
    r = await api.stripe_payment(client, await api.booking(client, pro, "5.00"), None)
    assert r.status_code == 201, r.text
    intent = await simulator(runtime).intent_object(r.json()["stripe_payment_id"])
    body, headers = simulator(runtime).stripe_event("payment_intent.payment_failed", intent)
    delivery, _ = await webhooks.receive(runtime, "stripe", headers, body)
    assert delivery is not None
    await simulator(runtime).inject_fault("get_hold", "error")
    once = Runtime.build(make_settings(database_url, webhook_max_attempts=1), database_url)
    try:
        dead = await webhooks.process(once, delivery.id)
    finally:
        await once.aclose()
    assert dead is not None and dead.status == "dead"

    listed = (await api.get("/admin/alerts", admin))["items"]
    assert [(a["kind"], a["object_type"]) for a in listed] == [
        ("webhook_dead", "webhook"),
        ("payout_failed", "payout"),
        ("dispute_opened", "dispute"),
        ("payment_failed", "payment"),
    ]
    assert listed[0]["object_id"] == delivery.id
    assert listed[1]["object_id"] == payout["id"] and listed[2]["object_id"] == dispute_id
    assert all(a["message"] and a["created_at"] for a in listed)

    records = [r for r in caplog.records if r.name == "handwork_payments.alerts"]
    assert [getattr(r, "alert_kind", None) for r in records] == [
        "payment_failed",
        "dispute_opened",
        "payout_failed",
        "webhook_dead",
    ]
    for record in records:
        assert record.levelno == logging.WARNING
        line = json.loads(JsonFormatter().format(record))
        assert line["event"] == "alert" and line["level"] == "WARNING"
        assert line["alert_kind"] == record.__dict__["alert_kind"]
        assert isinstance(line["object_id"], int) and line["object_type"]
        assert line["message"] == record.getMessage()
