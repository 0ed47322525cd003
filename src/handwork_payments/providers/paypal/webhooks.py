"""PayPal's webhook deliveries for the adapter: verified (by PayPal's
verify-webhook-signature, or offline against PayPal's certificate) before the body is
parsed, then translated into our terms, with the order id looked up where the event does
not name it. `PayPalProvider` inherits it."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from handwork_payments.providers.base import (
    EventKind,
    InvalidSignatureError,
    ProviderEvent,
    ProviderIds,
)
from handwork_payments.providers.paypal.client import PayPalError
from handwork_payments.providers.paypal.client import segment as _segment
from handwork_payments.providers.paypal.events import (
    AUTH_ALGO,
    CERT_URL,
    TRANSMISSION_ID,
    TRANSMISSION_SIG,
    TRANSMISSION_TIME,
    CertFetcher,
    check_transmission_time,
    header,
    load_event,
    lookup_hint,
    related_ids,
    translate,
    verify_offline,
)
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)


class PayPalWebhooks:
    """The webhook half of PayPalProvider: what it needs from the adapter is declared here."""

    _settings: Settings
    _fetch_cert: CertFetcher
    _call: Callable[..., Awaitable[dict[str, Any]]]
    ids: ProviderIds

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        """Verified before the body is parsed at all (a parser is attack surface), and only
        within PAYPAL_WEBHOOK_TOLERANCE_SECONDS of its transmission time. The event carries
        the transmission id, by which the inbox refuses a second body under the same
        signature headers (offline, the signature covers only a CRC32 of the body)."""
        check_transmission_time(headers, self._settings.paypal_webhook_tolerance_seconds)
        webhook_id = self._settings.paypal_webhook_id or ""
        if self._settings.paypal_webhook_verification == "offline":
            await verify_offline(headers, body, webhook_id, self._fetch_cert)
        else:
            await self._verify_via_api(headers, body, webhook_id)
        event = await self.translate_event(body)
        return replace(event, transmission_id=header(headers, TRANSMISSION_ID))

    async def translate_event(self, body: bytes) -> ProviderEvent:
        """A delivery verified when it arrived (parse_event), translated again without
        asking PayPal to verify it: the inbox retries and replays stored deliveries. The
        order id is still looked up (GET capture / authorisation) when the event does not
        name it, so this may raise ProviderUnavailableError."""
        event = load_event(body)
        return await self._with_order_id(event, translate(event, self.ids))

    async def _verify_via_api(
        self, headers: Mapping[str, str], body: bytes, webhook_id: str
    ) -> None:
        if not webhook_id:
            raise InvalidSignatureError(
                "PAYPAL_WEBHOOK_ID is not set: cannot verify PayPal webhooks"
            )
        fields = {
            "auth_algo": header(headers, AUTH_ALGO),
            "cert_url": header(headers, CERT_URL),
            "transmission_id": header(headers, TRANSMISSION_ID),
            "transmission_sig": header(headers, TRANSMISSION_SIG),
            "transmission_time": header(headers, TRANSMISSION_TIME),
            "webhook_id": webhook_id,
        }
        if not all(fields.values()):
            raise InvalidSignatureError("missing PayPal transmission headers")
        stripped = body.strip()
        if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
            raise InvalidSignatureError("not a PayPal webhook event")
        # The event goes in as the exact bytes PayPal signed, unparsed (PayPal refuses what is
        # not JSON): re-serialising it could change the CRC32 PayPal computes over it.
        content = json.dumps(fields)[:-1].encode() + b', "webhook_event": ' + stripped + b"}"
        try:
            answer = await self._call(
                "POST", "/v1/notifications/verify-webhook-signature", content=content
            )
        except PayPalError as exc:
            raise InvalidSignatureError(f"PayPal refused to verify the webhook: {exc}") from exc
        if answer.get("verification_status") != "SUCCESS":
            raise InvalidSignatureError(
                f"PayPal webhook verification: {answer.get('verification_status')}"
            )

    async def _with_order_id(
        self, event: Mapping[str, Any], translated: ProviderEvent
    ) -> ProviderEvent:
        """Fill in the order id for events whose resource does not name it (refunds,
        reversals, disputes): one GET of the capture or authorisation they point at."""
        if translated.object_id is not None or translated.kind is EventKind.IGNORED:
            return translated
        hint = lookup_hint(event)
        if hint is None:
            return translated
        kind, resource_id = hint
        path = (
            f"/v2/payments/captures/{_segment(resource_id)}"
            if kind == "capture"
            else f"/v2/payments/authorizations/{_segment(resource_id)}"
        )
        try:
            resource = await self._call("GET", path)
        except PayPalError as exc:
            # Not ours, or gone: the event is recorded against no object, as an unknown one.
            log.warning(
                "PayPal event %s: cannot look up %s %s: %s",
                translated.event_id,
                kind,
                resource_id,
                exc,
            )
            return translated
        order_id = related_ids(resource).get("order_id")
        return replace(translated, object_id=str(order_id)) if order_id else translated
