"""Payment method domains (Apple Pay, Google Pay, Link) registered and listed by admins over
HTTP, on the Stripe simulator: validated names, one registration per domain, an audit row,
and Stripe's absence or silence answered as such."""

from __future__ import annotations

import pytest

from handwork_payments.providers import DisabledProvider
from handwork_payments.runtime import Runtime
from tests.faults import simulator
from tests.helpers import Api

PATH = "/payment-method-domains"
A = "/admin/stripe" + PATH


async def test_registered_once_listed_and_audited(api: Api) -> None:
    admin = await api.admin()
    r = await api.post(A, admin, {"domain": "  Shop.Example.COM "})
    assert r.status_code == 201, r.text
    first = r.json()
    assert (first["domain"], first["enabled"]) == ("shop.example.com", True)
    assert first["id"].startswith("pmd_")
    assert first["wallets"] == {"apple_pay": "active", "google_pay": "active", "link": "active"}
    r = await api.post(A, admin, {"domain": "shop.example.com"})
    assert r.status_code == 201 and r.json()["id"] == first["id"], r.text
    r = await api.post(A, admin, {"domain": "pay.xn--80ak6aa92e.com"})
    assert r.status_code == 201, r.text

    listed = (await api.get(A, admin))["items"]
    assert sorted(d["domain"] for d in listed) == ["pay.xn--80ak6aa92e.com", "shop.example.com"]
    audit = (await api.get("/admin/audit", admin, object_type="installation"))["items"]
    actions = [(e["action"], e["actor_id"]) for e in audit]
    assert actions == [("stripe.payment_method_domain.registered", admin.id)] * 3


@pytest.mark.parametrize(
    "domain",
    [
        "https://shop.example.com",
        "shop.example.com/pay",
        "shop.example.com:443",
        "*.example.com",
        "localhost",
        "192.168.0.1",
        "-shop.example.com",
        "shop..example.com",
        "a" * 64 + ".example.com",
        ("a" * 60 + ".") * 5 + "com",
        "",
    ],
)
async def test_not_a_domain_name_is_422_and_nothing_is_registered(api: Api, domain: str) -> None:
    admin = await api.admin()
    r = await api.post(A, admin, {"domain": domain})
    assert r.status_code == 422, r.text
    assert (await api.get(A, admin))["items"] == []


async def test_only_admins(api: Api) -> None:
    client = await api.user("client")
    r = await api.post(A, client, {"domain": "shop.example.com"})
    assert r.status_code == 403
    r = await api.client.get(f"/api/v1{A}", headers=client.headers)
    assert r.status_code == 403


async def test_stripe_silent_is_502_and_a_retry_registers_it_once(api: Api) -> None:
    admin = await api.admin()
    await simulator(api.runtime).inject_fault("register_domain", "timeout_after_success")
    r = await api.post(A, admin, {"domain": "late.example.com"})
    assert r.status_code == 502, r.text
    assert "register the domain again" in r.json()["detail"]
    r = await api.post(A, admin, {"domain": "late.example.com"})
    assert r.status_code == 201, r.text
    assert [d["domain"] for d in (await api.get(A, admin))["items"]] == ["late.example.com"]


async def test_stripe_not_configured_is_400(
    api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await api.admin()
    monkeypatch.setattr(runtime.providers, "stripe", DisabledProvider("stripe"))
    r = await api.post(A, admin, {"domain": "shop.example.com"})
    assert (r.status_code, r.json()["detail"]) == (400, "stripe is not configured")
    r = await api.client.get(f"/api/v1{A}", headers=admin.headers)
    assert (r.status_code, r.json()["detail"]) == (400, "stripe is not configured")
