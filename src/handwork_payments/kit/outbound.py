"""POSTs to a URL this service does not own: the marketplace's webhook endpoint, the
alerts' webhook.

One aiohttp session per process and event loop, made at the first POST and kept, so its
connections are reused between deliveries. aiohttp, not httpx: measured here (2 cores,
a receiver in its own process, one POST at a time), a POST cost 1.77 ms of CPU through
httpx's AsyncClient and 0.25 ms through aiohttp's ClientSession, and a marketplace
event's delivery spent about 40% of its CPU in that POST. Redirects are not followed (a
webhook goes where the setting says); HTTP(S)_PROXY and NO_PROXY are honoured, as they
were through httpx, for hosts whose egress goes through a proxy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

# What is kept of an answer's body (an event's last_error quotes it).
BODY_KEPT = 500


@dataclass(frozen=True)
class Answer:
    status: int
    text: str  # the first BODY_KEPT bytes, decoded leniently


class Unreachable(Exception):
    """No answer: the connection failed, the timeout passed, or the URL is unusable."""


class Outbound:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], seconds: float) -> Answer:
        session = self._open()
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as answer:
                text = (await answer.content.read(BODY_KEPT)).decode(errors="replace")
                return Answer(answer.status, text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    def _open(self) -> aiohttp.ClientSession:
        # A session belongs to the loop it was made in (its connections are that loop's).
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            self._session = aiohttp.ClientSession(trust_env=True)
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._loop = None
