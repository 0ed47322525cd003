"""Security headers and the docs (issue 9, medium 6): API answers are never cached, every
answer says nosniff and no-referrer, the docs page runs only this service's scripts (no
CDN), and production serves no docs unless DOCS_ENABLED says so."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from handwork_payments import cli
from handwork_payments.app import create_app
from handwork_payments.http.headers import API_POLICY, DOCS_POLICY
from handwork_payments.runtime import Runtime
from tests.helpers import PASSWORD, Api


def assert_everywhere(r: httpx.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "server" not in r.headers


async def test_token_and_api_answers_are_not_cached(api: Api) -> None:
    worker = await api.user("worker")
    token = await api.client.post(
        "/api/v1/auth/token", data={"username": worker.email, "password": PASSWORD}
    )
    assert token.status_code == 200
    answers = [
        token,
        await api.client.get("/api/v1/auth/me", headers=worker.headers),
        await api.client.get("/api/v1/payments/earnings/worker", headers=worker.headers),
        await api.client.get("/api/v1/payments/"),  # 401
        await api.client.post("/api/v1/bookings", content=b"[" * 100),  # 422 from the limits
    ]
    for r in answers:
        assert r.headers["cache-control"] == "no-store", (r.url, r.headers)
        assert r.headers["content-security-policy"] == API_POLICY
        assert_everywhere(r)


async def test_health_carries_the_headers_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert_everywhere(r)
    assert "cache-control" not in r.headers


async def test_the_docs_page_uses_local_assets_under_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == DOCS_POLICY
    assert "'unsafe-inline'" not in DOCS_POLICY and "'unsafe-eval'" not in DOCS_POLICY
    assert_everywhere(page)
    assert "<script>" not in page.text  # no inline script: the policy would block it
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert referenced and all(url.startswith("/docs/") for url in referenced), referenced
    for url in referenced:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    start = await client.get("/docs/start.js")
    assert '"/openapi.json"' in start.text
    assert (await client.get("/openapi.json")).status_code == 200


@pytest.fixture
async def production_app(runtime: Runtime) -> AsyncIterator[Any]:
    async def app_with(**settings: Any) -> httpx.AsyncClient:
        changed = runtime.settings.model_copy(update={"handwork_env": "production", **settings})
        app = create_app(dataclasses.replace(runtime, settings=changed))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    yield app_with


async def test_production_serves_no_docs_unless_enabled(production_app: Any) -> None:
    async with await production_app() as http:
        for path in ("/docs", "/openapi.json", "/docs/start.js", "/docs/assets/swagger-ui.css"):
            assert (await http.get(path)).status_code == 404, path
    async with await production_app(docs_enabled=True) as http:
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200


def test_serve_sends_no_server_banner(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    cli.serve(host="127.0.0.1", port=8000, no_worker=True)
    assert seen["server_header"] is False


async def test_a_bug_answers_500_in_the_error_shape_with_every_header(runtime: Runtime) -> None:
    """An exception no handler knows once reached Starlette's outermost middleware, which
    answered a bare text 500 with none of the security headers."""
    app = create_app(runtime)

    @app.get("/api/v1/test-bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.get("/api/v1/test-bug")
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal server error"}
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-security-policy"] == API_POLICY
    assert_everywhere(r)
