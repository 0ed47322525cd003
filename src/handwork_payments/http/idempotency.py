"""Idempotency-Key on every authenticated POST/PUT/PATCH/DELETE: the first request's
response is stored with an HMAC of the request; the same key and body replays it without
acting twice, the same key with another body is a 422, and a key whose first request is
still running is a 409 (until the in-flight timeout: a request that died is taken over).

What is kept must be worth nothing to whoever reads the database:
- only authenticated requests, scoped by user ("user:7"); an anonymous request with a key
  is simply executed (its callers could not be told apart);
- never `/auth/*` (passwords in, live tokens out) nor the webhook routes (providers
  deduplicate by event id; their bodies are the providers' to keep);
- the request hash is an HMAC-SHA256 under a key derived from JWT_SECRET, so a body with
  a guessable secret in it cannot be recovered by hashing guesses;
- the response body is encrypted with the metadata keys (it may carry decrypted
  `payment_metadata`), and every record expires after IDEMPOTENCY_TTL_HOURS.

An ASGI middleware rather than a dependency because it must capture the whole response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handwork_payments.auth import tokens
from handwork_payments.db import transaction
from handwork_payments.http import idempotency_records as records
from handwork_payments.models import IdempotencyRecord
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 255
# Routes whose requests or answers carry credentials, or that are the providers' (the
# API's prefix is spelled out: app.py imports this module).
NEVER_STORED = ("/api/v1/auth/", "/api/v1/payments/webhooks/")
# Domain separation: the JWT secret signs tokens; this key, derived from it, only hashes
# requests, and knowing one of its outputs says nothing of the other.
HASH_KEY_LABEL = b"handwork-payments/idempotency-request-hash/v1"


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in METHODS
            or scope["path"].startswith(NEVER_STORED)
            # Most requests carry no key: no dict of headers, no token decoded for them.
            or not any(name.lower() == b"idempotency-key" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key")
        runtime = self.runtime()
        owner = _caller(headers.get("authorization", ""), runtime.jwt_secret)
        if key is None or owner is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            await _answer(send, 422, {"detail": "Idempotency-Key must be 1 to 255 characters"})
            return

        body = await _read_body(receive)
        digest = request_hash(runtime.jwt_secret, scope, body)
        settings = runtime.settings
        async with transaction(runtime.sessions) as session:
            record_id = await records.claim(
                session,
                scope=owner,
                key=key,
                request_hash=digest,
                ttl=timedelta(hours=settings.idempotency_ttl_hours),
                in_flight_timeout=timedelta(seconds=settings.idempotency_in_flight_timeout_seconds),
            )
            existing = None
            if record_id is None:
                existing = await records.existing(session, scope=owner, key=key)
        if existing is not None:
            await _answer_existing(send, runtime, existing, digest)
            return
        assert record_id is not None
        await self._run(scope, body, send, runtime, record_id)

    async def _run(
        self, scope: Scope, body: bytes, send: Send, runtime: Runtime, record_id: int
    ) -> None:
        status_code = 500
        chunks: list[bytes] = []

        async def replay_body() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        finally:
            async with transaction(runtime.sessions) as session:
                if status_code >= 500:
                    # Not an answer worth keeping: the caller may retry with the same key.
                    await records.forget(session, record_id)
                else:
                    text = b"".join(chunks).decode("utf-8", "surrogateescape")
                    ciphertext = runtime.cipher.encrypt({"body": text})
                    assert ciphertext is not None
                    await records.finish(session, record_id, status_code, ciphertext)


def request_hash(jwt_secret: str, scope: Scope, body: bytes) -> str:
    """HMAC-SHA256 of method, path, query and body, under a key derived from JWT_SECRET."""
    hash_key = hmac.new(jwt_secret.encode(), HASH_KEY_LABEL, hashlib.sha256).digest()
    message = b"\0".join(
        [scope["method"].encode(), scope["path"].encode(), scope["query_string"], body]
    )
    return hmac.new(hash_key, message, hashlib.sha256).hexdigest()


def _caller(authorization: str, secret: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    user_id = tokens.subject(token, secret) if scheme.lower() == "bearer" else None
    return f"user:{user_id}" if user_id is not None else None


async def _answer_existing(
    send: Send, runtime: Runtime, existing: IdempotencyRecord, digest: str
) -> None:
    if not hmac.compare_digest(existing.request_hash, digest):
        await _answer(
            send, 422, {"detail": "Idempotency-Key was already used with another request"}
        )
    elif existing.status_code is None:
        await _answer(send, 409, {"detail": "A request with this Idempotency-Key is still running"})
    else:
        try:
            stored = runtime.cipher.decrypt(existing.response_ciphertext)
        except InvalidToken:
            # Encrypted under a key this process does not have (a generated development
            # key of another process, or one rotated out): the answer is lost, and running
            # the request again could act twice.
            log.warning("idempotency record %s cannot be decrypted", existing.id)
            await _answer(
                send,
                409,
                {"detail": "The answer to this Idempotency-Key cannot be read; use a new key"},
            )
            return
        assert stored is not None
        body = str(stored["body"]).encode("utf-8", "surrogateescape")
        await _answer_raw(send, existing.status_code, body, True)


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send: Send, status: int, payload: dict[str, Any]) -> None:
    await _answer_raw(send, status, json.dumps(payload).encode(), False)


async def _answer_raw(send: Send, status: int, body: bytes, replayed: bool) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
