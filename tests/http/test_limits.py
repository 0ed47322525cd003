"""Request limits (issue 9, medium 3): a body larger than MAX_REQUEST_BYTES is a 413 before
more than the limit is read (webhooks included); JSON nested too deep is a 422 before any
parser recurses into it; payment_metadata is bounded like Stripe's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from handwork_payments.http.limits import MAX_JSON_DEPTH, too_deep
from handwork_payments.runtime import Runtime
from tests.helpers import Api

MIB = 1024 * 1024
CHUNK = 64 * 1024
HUNDRED_MB = 100 * MIB


class Body:
    """A large body produced lazily, counting what the server pulled from it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.size:
            self.pulled += CHUNK
            yield b"x" * CHUNK


@pytest.mark.parametrize(
    "path", ["/api/v1/payments/webhooks/stripe", "/api/v1/bookings", "/api/v1/auth/token"]
)
async def test_a_streamed_body_is_cut_off_at_the_limit(
    client: httpx.AsyncClient, runtime: Runtime, path: str
) -> None:
    body = Body(HUNDRED_MB)
    r = await client.post(path, content=body)  # chunked: no Content-Length
    assert r.status_code == 413
    assert r.json() == {"detail": f"Request body larger than {MIB} bytes"}
    assert runtime.settings.max_request_bytes == MIB
    # Read up to the limit and one chunk past it, never the rest.
    assert body.pulled == MIB + CHUNK


async def test_a_declared_length_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient,
) -> None:
    body = Body(HUNDRED_MB)
    r = await client.post(
        "/api/v1/payments/webhooks/paypal",
        content=body,
        headers={"Content-Length": str(HUNDRED_MB)},
    )
    assert r.status_code == 413
    assert r.json() == {"detail": f"Request body larger than {MIB} bytes"}
    assert body.pulled == 0


async def test_a_body_at_the_limit_reaches_the_endpoint(client: httpx.AsyncClient) -> None:
    # The endpoint read it and refused its content (not JSON) or the caller, not its size.
    r = await client.post("/api/v1/bookings", content=b" " * MIB)
    assert r.status_code in (401, 422), r.text


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "path", ["/api/v1/payments/webhooks/paypal", "/api/v1/bookings", "/api/v1/auth/register"]
)
async def test_json_nested_too_deep_is_a_422(
    client: httpx.AsyncClient, runtime: Runtime, path: str
) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000  # 400 KB, under the size limit
    for body in (deep, nested(MAX_JSON_DEPTH + 1)):
        r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()) == (
            422,
            {"detail": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"},
        )


def test_depth_counts_structure_not_strings() -> None:
    assert not too_deep(nested(MAX_JSON_DEPTH))
    assert too_deep(nested(MAX_JSON_DEPTH + 1))
    assert too_deep(b"  \n" + nested(MAX_JSON_DEPTH + 1))
    assert not too_deep(b'{"a": "' + b"[" * 1000 + b'"}')
    assert not too_deep(b'{"a": "\\"' + b"{" * 1000 + b'"}')
    assert not too_deep(b"[" + b"[1]," * 1000 + b"[1]]")  # wide, not deep
    assert not too_deep(b"email=a&password=" + b"[" * 1000)  # not JSON


async def test_payment_metadata_is_bounded_like_stripes(api: Api) -> None:
    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker)

    async def pay(metadata: object) -> httpx.Response:
        return await api.post(
            "/payments/stripe/payment-intent",
            client,
            {
                "booking_id": booking["id"],
                "amount": booking["amount"],
                "currency": "USD",
                "payment_method": "pm_card_visa",
                "metadata": metadata,
            },
        )

    refused = [
        {f"k{i}": "v" for i in range(51)},
        {"k" * 41: "v"},
        {"": "v"},
        {"k": "v" * 501},
        {"k": 2**63},
    ]
    for metadata in refused:
        r = await pay(metadata)
        assert r.status_code == 422, (metadata, r.text)
        assert r.json()["detail"].startswith("metadata"), r.text
    edge = {f"k{i}": "v" * 500 for i in range(49)} | {"k" * 40: 7}
    r = await pay(edge)
    assert r.status_code == 201, r.text
