"""The dashboard's pages and assets over HTTP: HTML under the service's strict
Content-Security-Policy, with nothing inline for that policy to refuse, and every asset
served by the service itself."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from handwork_payments.dashboard import pages
from handwork_payments.http.headers import DOCS_POLICY

TEMPLATES = Path(pages.__file__).parent / "templates"
STATIC = Path(pages.__file__).parent / "static"


async def test_each_page_is_html_under_the_strict_policy(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/dashboard/login", "/dashboard/queues", "/dashboard/payments",
                 "/dashboard/payments/7", "/dashboard/users", "/dashboard/me"):  # fmt: skip
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == DOCS_POLICY
        assert '<script type="module" src="/dashboard/static/main.js">' in r.text
    r = await client.get("/dashboard/payments/7")
    assert 'data-payment-id="7"' in r.text


async def test_nothing_inline_and_nothing_from_elsewhere() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"inline script in {template.name}"
        assert " style=" not in text and "<style" not in text, f"inline style in {template.name}"
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"remote asset in {template.name}"
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text, f"{script.name} builds HTML from strings"
        assert not re.search(r"from \"(https?:)?//", text), f"remote import in {script.name}"


async def test_every_module_the_pages_import_is_served(client: httpx.AsyncClient) -> None:
    for script in STATIC.glob("*.js"):
        for imported in re.findall(r'from "\./([\w.]+)"', script.read_text()):
            r = await client.get(f"/dashboard/static/{imported}")
            assert r.status_code == 200, imported
            assert "javascript" in r.headers["content-type"]
    r = await client.get("/dashboard/static/dashboard.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert (await client.get("/dashboard/static/nothing.js")).status_code == 404
