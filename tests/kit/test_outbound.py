"""The client for POSTs to URLs we do not own: every way a receiver can fail is an
Unreachable with a reason or an Answer, never an exception of the HTTP library; redirects
are not followed; a long answer is cut; one connection serves consecutive POSTs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from handwork_payments.kit.outbound import BODY_KEPT, Answer, Outbound, Unreachable


class Server:
    """A raw HTTP/1.1 server on 127.0.0.1 answering `reply` to every request (or nothing,
    when `reply` is None); counts connections and requests."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.connections = 0
        self.bodies: list[bytes] = []
        self.url = ""

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.bodies.append(await reader.readexactly(length))
                if self.reply is None:
                    await reader.read()  # never answers: waits for the client to hang up
                    break
                writer.write(self.reply)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def serving(reply: bytes | None) -> AsyncIterator[Server]:
    server = Server(reply)
    listening = await asyncio.start_server(server.answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield server
    finally:
        listening.close()


def reply(status: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    client = Outbound()
    yield client
    await client.aclose()


async def test_consecutive_posts_share_one_connection(outbound: Outbound) -> None:
    async with serving(reply("200 OK")) as server:
        for n in range(3):
            answer = await outbound.post(server.url, b'{"n":%d}' % n, {}, seconds=5)
            assert answer == Answer(200, "")
    assert server.bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert server.connections == 1


async def test_an_error_answer_is_kept_cut_and_a_redirect_is_not_followed(
    outbound: Outbound,
) -> None:
    async with serving(reply("503 Service Unavailable", b"x" * 5000)) as server:
        answer = await outbound.post(server.url, b"{}", {}, seconds=5)
    assert (answer.status, answer.text) == (503, "x" * BODY_KEPT)
    moved = reply("302 Found", b"", "Location: http://127.0.0.1:9/elsewhere")
    async with serving(moved) as server:
        answer = await outbound.post(server.url, b"{}", {}, seconds=5)
    assert answer.status == 302 and len(server.bodies) == 1


async def test_no_answer_is_unreachable_with_its_reason(outbound: Outbound) -> None:
    async with serving(None) as server:
        started = asyncio.get_running_loop().time()
        with pytest.raises(Unreachable, match="TimeoutError"):
            await outbound.post(server.url, b"{}", {}, seconds=0.3)
        assert asyncio.get_running_loop().time() - started < 5
    with pytest.raises(Unreachable, match="ClientConnectorError"):
        await outbound.post(server.url, b"{}", {}, seconds=5)  # nobody listens any more
    with pytest.raises(Unreachable, match="InvalidUrl"):
        await outbound.post("not a url", b"{}", {}, seconds=5)
