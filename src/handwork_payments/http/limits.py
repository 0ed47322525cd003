"""Request size and shape limits, before anything parses a body: a body larger than
MAX_REQUEST_BYTES is a 413 (refused on its Content-Length before a byte is read, or as
soon as the streamed body passes the limit), JSON nested deeper than MAX_JSON_DEPTH a 422
(json.loads and the handlers recurse: depth costs stack, not just bytes)."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH = 32

# A JSON string, escapes included: brackets inside one do not nest anything.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON-looking body nests arrays/objects more than `limit` deep. Not a
    parser: malformed JSON is the parser's to refuse; this only bounds its recursion."""
    if body.lstrip()[:1] not in (b"{", b"["):
        return False
    if body.count(b"{") + body.count(b"[") <= limit:
        return False  # the usual case, without scanning
    depth = 0
    for bracket in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


class RequestLimits:
    """Reads the body itself (never more than the limit), then hands the app a replay."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"Request body larger than {self.max_bytes} bytes"
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 413, too_large)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, 413, too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if too_deep(body):
            await _answer(send, 422, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # e.g. http.disconnect, for streaming responses
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
