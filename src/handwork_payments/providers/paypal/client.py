"""PayPal's HTTP plumbing: the OAuth2 client-credentials token (cached, renewed before it
expires, fetched by one task at a time), JSON calls carrying `PayPal-Request-Id`, the
certificate download for offline webhook checks, and the mapping of PayPal's answers to
errors.

Errors: PayPal's body (`name`, `message`, `details[].issue`, `debug_id`) becomes PayPalError
(a ProviderError; code = the first issue, else the name; the debug_id in the message, on the
exception and in the log); payer declines become PayPalDeclinedError (a PaymentDeclinedError);
timeouts, connection errors and 5xx become ProviderUnavailableError (outcome unknown: ask
again with the same key); 429 is retried a bounded number of times; one 401 refreshes the
token and retries once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from handwork_payments.providers.base import (
    InvalidSignatureError,
    PaymentDeclinedError,
    ProviderError,
    ProviderUnavailableError,
)
from handwork_payments.providers.paypal.events import is_paypal_cert_url
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_API_BASE = "https://api-m.sandbox.paypal.com"
LIVE_API_BASE = "https://api-m.paypal.com"

# A token is renewed this long before PayPal says it expires (tokens live ~9 hours), so a
# request never leaves with a token that dies in flight.
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
MAX_RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER_SECONDS = 10.0
CERT_CACHE_SIZE = 16

# Issues that mean the payer's wallet, bank or PayPal's risk checks said no: a decline, not
# a fault of ours (402 for the API, the payment fails).
DECLINE_ISSUES = frozenset(
    {
        "INSTRUMENT_DECLINED",
        "PAYER_CANNOT_PAY",
        "TRANSACTION_REFUSED",
        "PAYER_ACCOUNT_RESTRICTED",
        "PAYER_ACCOUNT_LOCKED_OR_CLOSED",
        "CARD_EXPIRED",
        "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
        "TRANSACTION_LIMIT_EXCEEDED",
        "DECLINED_DUE_TO_RELATED_TXN",
        "AUTHORIZATION_DENIED",
    }
)


class PayPalError(ProviderError):
    """PayPal answered and refused. `code` is the first details[].issue (else the error
    name); `debug_id` is what PayPal support asks for."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        debug_id: str | None = None,
        status: int | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.debug_id = debug_id
        self.status = status
        self.body: Mapping[str, Any] = body or {}


class PayPalDeclinedError(PaymentDeclinedError, PayPalError):
    """The payer's funding was declined."""


def segment(value: str) -> str:
    """An id as one path segment: an id is never allowed to reach another path."""
    return quote(value, safe="")


class PayPalClient:
    """Calls PayPal's REST API. `transport` exists for tests (a validating transport)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limit_backoff_seconds: float = 0.5,
        max_rate_limit_retries: int = MAX_RATE_LIMIT_RETRIES,
    ) -> None:
        if not (settings.paypal_client_id and settings.paypal_client_secret):
            raise ValueError("PayPalProvider needs PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET")
        self._client_id = settings.paypal_client_id
        self._client_secret = settings.paypal_client_secret
        self.api_base = (
            settings.paypal_api_base
            or (LIVE_API_BASE if settings.paypal_mode == "live" else SANDBOX_API_BASE)
        ).rstrip("/")
        timeout = httpx.Timeout(settings.provider_timeout_seconds)
        self._http = httpx.AsyncClient(base_url=self.api_base, timeout=timeout, transport=transport)
        # Certificates come from paypal.com, never from the API base a test may point at.
        self._cert_http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._certs: dict[str, bytes] = {}
        self._token: str | None = None
        self._token_renew_at = 0.0
        # One token request at a time: a burst of calls after expiry (or of 401s) must not
        # each fetch a token.
        self._token_lock = asyncio.Lock()
        self._backoff_seconds = rate_limit_backoff_seconds
        self._max_rate_limit_retries = max_rate_limit_retries
        self.token_fetches = 0

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._cert_http.aclose()

    # ----------------------------------------------------------------------- OAuth2

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < self._token_renew_at:
            return token
        async with self._token_lock:
            # Another task may have fetched one while we waited for the lock.
            if self._token is None or time.monotonic() >= self._token_renew_at:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _renew_rejected_token(self, rejected: str) -> None:
        """After a 401: fetch a new token unless another task already replaced the one
        PayPal rejected (so N concurrent 401s cause one token request, not N)."""
        async with self._token_lock:
            if self._token in (None, rejected):
                await self._fetch_token()

    async def _fetch_token(self) -> None:
        # No OpenAPI spec covers /v1/oauth2/token; its shape is PayPal's documented one.
        try:
            response = await self._http.post(
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(self._client_id, self._client_secret),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise ProviderUnavailableError(f"PayPal token request failed: {exc!r}") from exc
        if response.status_code >= 500:
            raise ProviderUnavailableError(f"PayPal token request answered {response.status_code}")
        body = self._json_or_empty(response)
        if response.status_code != 200 or not body.get("access_token"):
            debug_id = response.headers.get("PayPal-Debug-Id")
            log.error(
                "PayPal refused the client credentials: %s %s (debug_id=%s)",
                response.status_code,
                body.get("error"),
                debug_id,
            )
            reason = body.get("error_description") or body.get("error") or response.status_code
            raise PayPalError(
                f"PayPal refused the client credentials: {reason}",
                code=str(body.get("error") or f"HTTP_{response.status_code}"),
                debug_id=debug_id,
                status=response.status_code,
                body=body,
            )
        expires_in = float(body.get("expires_in") or 0)
        margin = min(TOKEN_REFRESH_MARGIN_SECONDS, expires_in / 10)
        self._token = str(body["access_token"])
        self._token_renew_at = time.monotonic() + max(expires_in - margin, 0.0)
        self.token_fetches += 1

    # ----------------------------------------------------------------------- HTTP

    @staticmethod
    def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        request_id: str | None = None,
        representation: bool = False,
        parts: Mapping[str, tuple[str | None, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """One API call, its JSON answer on 2xx ({} for 204); errors mapped as the module
        docstring says. `parts`: a multipart/form-data body instead (name -> (file name or
        None, content, content type)), as provide-evidence takes it."""
        headers = {"Accept": "application/json"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id
        if representation:
            headers["Prefer"] = "return=representation"
        if json_body is not None:
            content = json.dumps(json_body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        renewed = False
        rate_limited = 0
        while True:
            token = await self._access_token()
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=content,
                    files=parts,
                    params=params,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                )
            except httpx.TimeoutException as exc:
                raise ProviderUnavailableError(f"PayPal {method} {path} timed out") from exc
            except httpx.TransportError as exc:
                raise ProviderUnavailableError(f"PayPal {method} {path} failed: {exc!r}") from exc
            status = response.status_code
            # A 401 means the request was not processed: safe to send again once.
            if status == 401 and not renewed:
                renewed = True
                log.info("PayPal rejected the access token; fetching a new one")
                await self._renew_rejected_token(token)
                continue
            # A 429 was not processed either; back off a bounded number of times.
            if status == 429 and rate_limited < self._max_rate_limit_retries:
                rate_limited += 1
                await asyncio.sleep(self._retry_delay(rate_limited, response))
                continue
            if 200 <= status < 300:
                if status == 204 or not response.content:
                    return {}
                try:
                    body = response.json()
                except ValueError as exc:
                    # It acted (2xx) but we cannot read what it did: unknown, ask again.
                    raise ProviderUnavailableError(
                        f"PayPal {method} {path} answered unreadable JSON"
                    ) from exc
                return body if isinstance(body, dict) else {}
            raise self._error(method, path, response)

    def _retry_delay(self, attempt: int, response: httpx.Response) -> float:
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            return min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
        return min(self._backoff_seconds * 2 ** (attempt - 1), MAX_RETRY_AFTER_SECONDS)

    def _error(self, method: str, path: str, response: httpx.Response) -> Exception:
        body = self._json_or_empty(response)
        status = response.status_code
        name = str(body.get("name") or body.get("error") or f"HTTP_{status}")
        message = str(
            body.get("message") or body.get("error_description") or response.reason_phrase
        )
        details = [d for d in body.get("details") or () if isinstance(d, Mapping)]
        issues = [str(d["issue"]) for d in details if d.get("issue")]
        debug_id = body.get("debug_id") or response.headers.get("PayPal-Debug-Id")
        code = issues[0] if issues else name
        described = "; ".join(
            f"{d.get('issue')}" + (f": {d['description']}" if d.get("description") else "")
            for d in details
            if d.get("issue")
        )
        text = f"PayPal {name}: {message}" + (f" ({described})" if described else "")
        text += f" [debug_id {debug_id}]" if debug_id else ""
        log.warning(
            "PayPal %s %s answered %s %s (debug_id=%s)", method, path, status, code, debug_id
        )
        if status >= 500 or status in (408, 429):
            return ProviderUnavailableError(text)
        cls = PayPalDeclinedError if code in DECLINE_ISSUES else PayPalError
        return cls(
            text, code=code, debug_id=str(debug_id) if debug_id else None, status=status, body=body
        )

    # ----------------------------------------------------------------------- certificates

    async def fetch_cert(self, url: str) -> bytes:
        """The certificate at `url` (a paypal.com https address), cached by URL."""
        cached = self._certs.get(url)
        if cached is not None:
            return cached
        # Checked again here (verify_offline does first): this fetcher must never be the
        # way to make us download from anywhere else.
        if not is_paypal_cert_url(url):
            raise InvalidSignatureError("PAYPAL-CERT-URL is not a paypal.com https address")
        try:
            response = await self._cert_http.get(url)
        except httpx.TransportError as exc:
            raise InvalidSignatureError(f"cannot download the PayPal certificate: {exc!r}") from exc
        if response.status_code != 200:
            raise InvalidSignatureError(
                f"PayPal certificate download answered {response.status_code}"
            )
        if len(self._certs) >= CERT_CACHE_SIZE:
            self._certs.pop(next(iter(self._certs)))
        self._certs[url] = response.content
        return response.content
