"""Security headers on every response. API responses carry personal and payment data (and
/auth/token a live token): no cache may keep them. The docs page is the only HTML: it may
run scripts and styles served by this service, nothing else (no CDN, no inline script)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# JSON is never a document: nothing it could load or frame.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, private_prefix: str) -> None:
        self.app = app
        self.private_prefix = private_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope["path"].startswith(self.private_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "no-referrer"
                html = headers.get("content-type", "").startswith("text/html")
                headers["content-security-policy"] = DOCS_POLICY if html else API_POLICY
                if private:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
