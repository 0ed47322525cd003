"""Alerts as an operator lives them: recorded with their cause (never for a change that
rolled back), one open alert per kind and object however often it recurs, acknowledged,
and delivered to a person through a Slack-compatible webhook and SMTP, surviving an
outage of both."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from procrastinate import RetryStrategy
from sqlalchemy import select, text

from handwork_payments.audit import delivery
from handwork_payments.audit.alerts import alert
from handwork_payments.audit.tasks import DELIVERY_ATTEMPTS, deliver_alert
from handwork_payments.db import transaction
from handwork_payments.models import Alert
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import Api


async def _raise_twice(runtime: Runtime) -> None:
    for message in ("first", "second"):
        async with transaction(runtime.sessions) as session:
            await alert(session, "payout_failed", message, "payout", 7)


async def test_a_recurring_alert_is_one_open_row_with_a_count_until_acknowledged(
    api: Api, runtime: Runtime
) -> None:
    admin = await api.admin()
    await _raise_twice(runtime)
    async with transaction(runtime.sessions) as session:
        await alert(session, "payout_failed", "another payout", "payout", 8)

    listed = (await api.get("/admin/alerts", admin, status="open"))["items"]
    assert [(a["object_id"], a["count"], a["message"]) for a in listed] == [
        (8, 1, "another payout"),
        (7, 2, "second"),
    ]
    seven = listed[1]
    assert seven["status"] == "open" and seven["first_seen_at"] <= seven["last_seen_at"]

    r = await api.post(f"/admin/alerts/{seven['id']}/acknowledge", admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == admin.id
    again = await api.post(f"/admin/alerts/{seven['id']}/acknowledge", admin)
    assert again.json()["acknowledged_at"] == r.json()["acknowledged_at"]
    assert (await api.post("/admin/alerts/999999/acknowledge", admin)).status_code == 404

    # Once acknowledged, the next occurrence is news again: a new open alert.
    async with transaction(runtime.sessions) as session:
        await alert(session, "payout_failed", "third", "payout", 7)
    opened = (await api.get("/admin/alerts", admin, status="open"))["items"]
    assert [(a["object_id"], a["count"]) for a in opened] == [(7, 1), (8, 1)]
    acknowledged = (await api.get("/admin/alerts", admin, status="acknowledged"))["items"]
    assert [(a["id"], a["count"]) for a in acknowledged] == [(seven["id"], 2)]
    # A delivery job for each alert's first occurrence only: three alerts, three jobs.
    async with runtime.sessions() as session:
        jobs = (
            await session.execute(
                text("SELECT args->>'alert_id' FROM procrastinate_jobs ORDER BY id")
            )
        ).scalars()
        assert [int(j) for j in jobs] == [seven["id"], listed[0]["id"], opened[0]["id"]]


async def test_an_alert_of_a_rolled_back_change_is_neither_kept_nor_logged(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handwork_payments.alerts")
    with pytest.raises(RuntimeError):
        async with transaction(runtime.sessions) as session:
            await alert(session, "payment_failed", "declined", "payment", 3)
            assert caplog.records == []  # not before the commit
            raise RuntimeError("the cause rolled back")
    async with runtime.sessions() as session:
        assert (await session.scalars(select(Alert))).all() == []
        jobs = await session.execute(text("SELECT count(*) FROM procrastinate_jobs"))
        assert jobs.scalar() == 0
    assert caplog.records == []

    async with transaction(runtime.sessions) as session:
        await alert(session, "payment_failed", "declined", "payment", 3)
    assert [(r.getMessage(), r.__dict__["alert_kind"]) for r in caplog.records] == [
        ("declined", "payment_failed")
    ]


class _Sink(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    yield _free_port(), _free_port()


async def test_delivery_to_a_webhook_and_smtp_survives_their_outage(
    runtime: Runtime, database_url: str, ports: tuple[int, int]
) -> None:
    web_port, smtp_port = ports
    settings = make_settings(
        database_url,
        alert_webhook_url=f"http://127.0.0.1:{web_port}/hooks/alerts",
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        alert_email_to="ops@example.com",
    )
    sending = Runtime.build(settings, database_url)
    try:
        async with transaction(runtime.sessions) as session:
            await alert(session, "webhook_dead", "stripe delivery 4 dead", "webhook", 4)
        async with runtime.sessions() as session:
            alert_id = (await session.scalars(select(Alert.id))).one()

        # Both receivers are down: the job fails (procrastinate retries it) and says why.
        with pytest.raises(delivery.DeliveryFailed):
            await delivery.deliver(sending, alert_id)
        async with runtime.sessions() as session:
            row = await session.get(Alert, alert_id)
            assert row is not None and row.delivery_attempts == 1
            assert row.delivery_error and "webhook" in row.delivery_error
            assert "email" in row.delivery_error
            assert row.webhook_sent_at is None and row.email_sent_at is None

        # They come back: one message through each, and a further run sends nothing again.
        _Sink.received = []
        web = HTTPServer(("127.0.0.1", web_port), _Sink)
        Thread(target=web.serve_forever, daemon=True).start()
        mailbox = _Mailbox()
        smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        try:
            await delivery.deliver(sending, alert_id)
            await delivery.deliver(sending, alert_id)
        finally:
            smtp.stop()
            web.shutdown()
            web.server_close()
        expected = "[Handwork Payments] webhook_dead: stripe delivery 4 dead (webhook #4)"
        assert _Sink.received == [{"text": expected}]
        assert len(mailbox.messages) == 1
        envelope = mailbox.messages[0]
        assert envelope.rcpt_tos == ["ops@example.com"]
        assert expected in envelope.content.decode()
        async with runtime.sessions() as session:
            row = await session.get(Alert, alert_id)
            assert row is not None and row.delivery_attempts == 3 and row.delivery_error is None
            assert row.webhook_sent_at is not None and row.email_sent_at is not None
    finally:
        await sending.aclose()


def test_the_delivery_job_retries_with_backoff() -> None:
    # procrastinate waits exponential_wait ** (attempts + 1): 2 s, 4 s ... 4096 s, about
    # two hours and a quarter in all.
    strategy = deliver_alert.retry_strategy
    assert isinstance(strategy, RetryStrategy)
    assert strategy.max_attempts == DELIVERY_ATTEMPTS == 12 and strategy.exponential_wait == 2


async def test_no_channel_configured_sends_nothing(runtime: Runtime) -> None:
    async with transaction(runtime.sessions) as session:
        await alert(session, "dispute_opened", "dispute 1", "dispute", 1)
    async with runtime.sessions() as session:
        alert_id = (await session.scalars(select(Alert.id))).one()
    await asyncio.wait_for(delivery.deliver(runtime, alert_id), 5)
    async with runtime.sessions() as session:
        row = await session.get(Alert, alert_id)
        assert row is not None and row.delivery_attempts == 1 and row.webhook_sent_at is None
