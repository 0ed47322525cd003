"""Idempotency-Key on every POST/PUT: the first request's response is stored with a hash of
the request; the same key and body replays it without acting twice, the same key with
another body is a 422, and a key whose first request is still running is a 409.

An ASGI middleware rather than a dependency because it must capture the whole response.
The key is scoped to the caller (the bearer token's user), so two users' keys never meet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handwork_payments.auth import tokens
from handwork_payments.db import transaction
from handwork_payments.models import IdempotencyRecord
from handwork_payments.runtime import Runtime

METHODS = {"POST", "PUT", "PATCH", "DELETE"}
MAX_KEY_LENGTH = 255


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key")
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            await _answer(send, 422, {"detail": "Idempotency-Key must be 1 to 255 characters"})
            return

        body = await _read_body(receive)
        runtime = self.runtime()
        owner = _caller(headers.get("authorization", ""), runtime.jwt_secret)
        digest = hashlib.sha256(
            b"\0".join(
                [scope["method"].encode(), scope["path"].encode(), scope["query_string"], body]
            )
        ).hexdigest()

        async with transaction(runtime.sessions) as session:
            inserted = (
                await session.execute(
                    insert(IdempotencyRecord)
                    .values(scope=owner, key=key, request_hash=digest)
                    .on_conflict_do_nothing(constraint="uq_idempotency_records_scope_key")
                    .returning(IdempotencyRecord.id)
                )
            ).scalar_one_or_none()
            existing = None
            if inserted is None:
                existing = (
                    await session.execute(
                        select(IdempotencyRecord).where(
                            IdempotencyRecord.scope == owner, IdempotencyRecord.key == key
                        )
                    )
                ).scalar_one()
        if existing is not None:
            if existing.request_hash != digest:
                await _answer(
                    send, 422, {"detail": "Idempotency-Key was already used with another request"}
                )
            elif existing.status_code is None:
                await _answer(
                    send, 409, {"detail": "A request with this Idempotency-Key is still running"}
                )
            else:
                await _answer_raw(
                    send, existing.status_code, (existing.response_body or "").encode(), True
                )
            return

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
                match = (IdempotencyRecord.scope == owner) & (IdempotencyRecord.key == key)
                if status_code >= 500:
                    # Not an answer worth keeping: the caller may retry with the same key.
                    await session.execute(delete(IdempotencyRecord).where(match))
                else:
                    await session.execute(
                        update(IdempotencyRecord)
                        .where(match)
                        .values(status_code=status_code, response_body=b"".join(chunks).decode())
                    )


def _caller(authorization: str, secret: str) -> str:
    scheme, _, token = authorization.partition(" ")
    user_id = tokens.subject(token, secret) if scheme.lower() == "bearer" else None
    return f"user:{user_id}" if user_id is not None else "anonymous"


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
