"""GET /metrics after a known flow, parsed with prometheus-client's own parser: business
figures from the database, HTTP durations by route template, provider calls by outcome;
the bearer token; several processes adding up through the multiprocess folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from handwork_payments.app import create_app
from handwork_payments.http import metrics as http_metrics
from handwork_payments.payouts import service as payouts
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.faults import earner, requested
from tests.helpers import Api

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(api: Api, **headers: str) -> Samples:
    r = await api.client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def _flow(api: Api, runtime: Runtime) -> dict[str, Any]:
    """Two held card payments (one released: fee 5.00), one declined, a dispute resolved,
    a payout completed."""
    worker, admin = await earner(api, "100.00")
    payout = await requested(api, worker, "10.00", "stripe")
    await api.post(f"/payments/payouts/{payout['id']}/process", admin)
    await payouts.send(runtime, payout["id"])
    client, _, held = await api.held_payment("40.00")
    r = await api.post(
        "/payments/disputes",
        client,
        {"payment_id": held["id"], "reason": "Late", "description": "Two hours late"},
    )
    r = await api.post(
        f"/payments/disputes/{r.json()['id']}/resolve",
        admin,
        {"outcome": "refund", "resolution_notes": "Refund it"},
    )
    assert r.status_code == 200, r.text
    c, w = await api.user("client"), await api.user("worker")
    declined = await api.stripe_payment(
        c, await api.booking(c, w, "9.00"), "pm_card_chargeDeclined"
    )
    assert declined.status_code == 402
    return held


async def test_metrics_after_a_known_flow(api: Api, runtime: Runtime) -> None:
    before = await scrape(api)
    held = await _flow(api, runtime)
    after = await scrape(api)

    stripe = {"provider": "stripe"}
    counts = {
        s: value(after, "handwork_payments_total", status=s, **stripe)
        for s in ("created", "held", "failed", "released", "refunded", "disputed")
    }
    assert counts == {
        "created": 3,
        "held": 2,
        "failed": 1,
        "released": 1,
        "refunded": 1,
        "disputed": 1,
    }
    assert value(after, "handwork_payment_hold_seconds_count", **stripe) == 2
    assert value(after, "handwork_payment_hold_seconds_bucket", le="+Inf", **stripe) == 2
    assert value(after, "handwork_platform_fee_revenue", currency="USD") == 5.0
    # Net beside gross: the simulator kept 2.9% + 0.30 of the one capture (100.00); the
    # 40.00 refunded before release was never captured, so cost nothing.
    assert value(after, "handwork_provider_fees", currency="USD") == 3.2
    assert value(after, "handwork_platform_losses", currency="USD") == 0.0
    assert value(after, "handwork_platform_net_revenue", currency="USD") == 1.8
    assert value(after, "handwork_dispute_resolution_seconds_count") == 1
    assert value(after, "handwork_payout_processing_seconds_count", **stripe) == 1
    assert value(after, "handwork_open_alerts", kind="dispute_opened") == 1
    assert value(after, "handwork_open_alerts", kind="payment_failed") == 1
    # Alert deliveries deferred, waiting for a worker (none runs here).
    assert value(after, "handwork_jobs_total", task="deliver_alert", status="todo") == 2
    assert value(after, "handwork_job_queue_depth", queue="default") >= 2
    # Observed (development): new clients paying new workers from one address, reviewed
    # had RISK_MODE been enforce; none blocked.
    observed = {"outcome": "review", "mode": "observe"}
    assert value(after, "handwork_risk_decisions_total", **observed) == 3
    assert value(after, "handwork_risk_decisions_total", outcome="block", mode="enforce") == 0

    # Process-local histograms: the flow's own requests and provider calls.
    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    release = "/api/v1/payments/{payment_id}/release"
    assert (
        grew(
            "handwork_http_request_duration_seconds_count",
            method="POST",
            route=release,
            status="200",
        )
        == 1
    )
    routes = {dict(k[1]).get("route") for k in after if k[0].startswith("handwork_http_")}
    # Templates only: no segment is an id (the flow's paths held ids such as the payment's).
    assert f"/api/v1/payments/{held['id']}/release" not in routes
    assert all(r == "unmatched" or r.startswith("/") for r in routes if r is not None)
    assert not any(part.isdigit() for r in routes if r for part in r.split("/"))
    calls = {
        (dict(k[1])["operation"], dict(k[1])["outcome"]): int(v - before.get(k, 0))
        for k, v in after.items()
        if k[0] == "handwork_provider_request_seconds_count" and v - before.get(k, 0)
    }
    # The declined card is a refusal; the dispute's refund of an authorised hold cancels it.
    assert calls == {
        ("create_hold", "ok"): 2,
        ("create_hold", "refused"): 1,
        ("capture", "ok"): 1,
        ("send_payout", "ok"): 1,
        ("cancel", "ok"): 1,
    }


async def test_a_random_path_is_counted_as_unmatched(api: Api) -> None:
    before = await scrape(api)
    await api.client.get("/no/such/path/12345")
    after = await scrape(api)
    key = (
        "handwork_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "unmatched"), ("status", "404")),
    )
    assert after[key] - before.get(key, 0) == 1


async def test_the_metrics_token(runtime: Runtime, database_url: str) -> None:
    guarded = Runtime.build(make_settings(database_url, metrics_token="s3cret"), database_url)
    try:
        transport = httpx.ASGITransport(app=create_app(guarded))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await http.get("/metrics", headers=wrong)).status_code == 401
            ok = await http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200 and "handwork_payments" in ok.text
    finally:
        await guarded.aclose()


_CHILD = """
import asyncio
from handwork_payments.providers.metrics import _timed

async def call():
    return None

asyncio.run(_timed("paypal", "capture", call)())
"""


def test_processes_add_up_in_the_multiprocess_folder(tmp_path: Path) -> None:
    """What `serve --workers N` and worker processes sharing PROMETHEUS_MULTIPROC_DIR do:
    each process writes its samples, any process answers with their sum."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, timeout=60)
    from prometheus_client import generate_latest

    samples = parse(generate_latest(http_metrics.registry_for(str(tmp_path))).decode())
    labels = {"provider": "paypal", "operation": "capture", "outcome": "ok"}
    assert value(samples, "handwork_provider_request_seconds_count", **labels) == 2


async def test_histogram_buckets_count_a_bound_as_le_does(runtime: Runtime) -> None:
    from sqlalchemy import text

    from handwork_payments.analytics.prometheus import _histogram, _histogram_sql

    sql = _histogram_sql(
        (1, 5, 15),
        "n * interval '1 second'",
        "(VALUES (0), (1), (2), (5), (6), (15), (16), (100)) v(n)",
        "'all'",
    )
    async with runtime.sessions() as session:
        rows = (await session.execute(text(sql))).all()
    family = _histogram("h", "h", "kind", rows, (1, 5, 15))
    assert [(s.name, s.labels.get("le"), s.value) for s in family.samples] == [
        ("h_bucket", "1", 2),
        ("h_bucket", "5", 4),
        ("h_bucket", "15", 6),
        ("h_bucket", "+Inf", 8),
        ("h_count", None, 8),
        ("h_sum", None, 145.0),
    ]
