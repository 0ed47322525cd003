"""Security headers on every response. API responses carry personal and payment data (and
/auth/token a live token): no cache may keep them. The docs page is the only HTML: it may
run scripts and styles served by this service, nothing else (no CDN, no inline script)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# JSON is never a document: nothing it could load or frame.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
INTERNAL_ERROR = JSONResponse({"detail": "Internal server error"}, status_code=500)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, private_prefix: str) -> None:
        self.app = app
        self.private_prefix = private_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope["path"].startswith(self.private_prefix)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "no-referrer"
                html = headers.get("content-type", "").startswith("text/html")
                headers["content-security-policy"] = DOCS_POLICY if html else API_POLICY
                if private:
                    headers["cache-control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # A bug: Starlette's outermost middleware would answer a bare text 500 with
            # none of the headers above. Answer it here, in the API's error shape, and
            # raise on for the server to log (it sends nothing more once a response began).
            if not started:
                await INTERNAL_ERROR(scope, receive, send_with_headers)
            raise
