"""Path parameters (issue 9, medium 2): a fixed path under /payments is not swallowed by
/payments/{payment_id}, and an id beyond BIGINT is a 4xx on every route."""

from __future__ import annotations

import re

import pytest

from handwork_payments.app import create_app
from handwork_payments.runtime import Runtime
from tests.helpers import Api

TOO_BIG = "99999999999999999999"


@pytest.mark.parametrize("path", ["/payments/refund", "/payments/payout-methods"])
async def test_a_fixed_path_with_another_method_is_a_405(api: Api, path: str) -> None:
    admin = await api.admin()
    r = await api.client.get(f"/api/v1{path}", headers=admin.headers)
    assert (r.status_code, r.json()) == (405, {"detail": "Method Not Allowed"})


async def test_ids_beyond_bigint_are_4xx_on_every_route(api: Api, runtime: Runtime) -> None:
    admin = await api.admin()
    schema = create_app(runtime).openapi()
    tried = 0
    for path, operations in schema["paths"].items():
        if "{" not in path:
            continue
        url = re.sub(r"\{[^}]+\}", TOO_BIG, path)
        for method in operations:
            r = await api.client.request(method, url, headers=admin.headers, json={})
            assert r.status_code in (404, 422), (method, path, r.status_code, r.text)
            tried += 1
    assert tried >= 10
