"""Sending an alert to a person: a Slack-compatible webhook (`{"text": ...}`) and/or an
email. Each channel is marked sent on its own, so a retry after one failed never sends
twice through the other; a failure is recorded on the alert and raised for the job's
retry strategy."""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from sqlalchemy import update

from handwork_payments.db import transaction
from handwork_payments.kit.clock import now
from handwork_payments.kit.outbound import Unreachable
from handwork_payments.models import Alert
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings

TIMEOUT_SECONDS = 10.0


class DeliveryFailed(Exception):
    """A channel did not take the alert; the job tries again later."""


def text_of(alert: Alert) -> str:
    return (
        f"[Handwork Payments] {alert.kind}: {alert.message} "
        f"({alert.object_type} #{alert.object_id})"
    )


async def post_webhook(runtime: Runtime, url: str, text: str) -> None:
    body = json.dumps({"text": text}).encode()
    headers = {"Content-Type": "application/json"}
    try:
        answer = await runtime.outbound.post(url, body, headers, TIMEOUT_SECONDS)
    except Unreachable as exc:
        raise DeliveryFailed(str(exc)) from exc
    if answer.status >= 300:
        raise DeliveryFailed(f"webhook answered {answer.status}")


def send_email(settings: Settings, subject: str, body: str) -> None:
    assert settings.smtp_url and settings.alert_email_to
    url = urlsplit(settings.smtp_url)
    if url.scheme not in ("smtp", "smtps"):
        raise DeliveryFailed("SMTP_URL must start with smtp:// or smtps://")
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.alert_email_from
    message["To"] = settings.alert_email_to
    message.set_content(body)
    context = ssl.create_default_context()
    host = url.hostname or "localhost"
    smtp: smtplib.SMTP
    if url.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(host, url.port or 465, timeout=TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(host, url.port or 25, timeout=TIMEOUT_SECONDS)
    with smtp:
        smtp.ehlo()
        if url.scheme == "smtp" and smtp.has_extn("starttls"):
            smtp.starttls(context=context)
            smtp.ehlo()
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(message)


async def _mark(runtime: Runtime, alert_id: int, **values: object) -> None:
    async with transaction(runtime.sessions) as session:
        await session.execute(update(Alert).where(Alert.id == alert_id).values(**values))


async def deliver(runtime: Runtime, alert_id: int) -> None:
    """Send the alert through every configured channel it has not reached yet."""
    settings = runtime.settings
    async with runtime.sessions() as session:
        alert = await session.get(Alert, alert_id)
    if alert is None:
        return
    text = text_of(alert)
    errors: list[str] = []
    if settings.alert_webhook_url and alert.webhook_sent_at is None:
        try:
            await post_webhook(runtime, settings.alert_webhook_url, text)
            await _mark(runtime, alert_id, webhook_sent_at=now())
        except DeliveryFailed as exc:
            errors.append(f"webhook: {exc}")
    if settings.smtp_url and settings.alert_email_to and alert.email_sent_at is None:
        try:
            await asyncio.to_thread(send_email, settings, text[:200], text)
            await _mark(runtime, alert_id, email_sent_at=now())
        except (OSError, smtplib.SMTPException, DeliveryFailed) as exc:
            errors.append(f"email: {exc}")
    await _mark(
        runtime,
        alert_id,
        delivery_attempts=Alert.delivery_attempts + 1,
        delivery_error="; ".join(errors) or None,
    )
    if errors:
        raise DeliveryFailed("; ".join(errors))
