"""GET /metrics in Prometheus' text format, and the HTTP duration middleware.

Two sources, chosen by what each measures:
- Business figures (payments, hold latency, fee revenue, disputes, payouts, webhooks,
  jobs, alerts) are read from the database at scrape time (analytics/prometheus.py):
  every process writes there, so one scrape of any process is right for all of them.
- Durations only a process sees (HTTP requests, provider calls) are prometheus-client
  histograms. With several processes on a host (`serve --workers N`, `worker`
  processes) they use prometheus-client's multiprocess mode: `serve` points
  PROMETHEUS_MULTIPROC_DIR at a fresh folder unless it is set, every process writes its
  samples there and any of them answers with the sum. Worker processes started apart
  from `serve` are counted when given the same PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import hmac
import os
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handwork_payments.analytics.prometheus import families
from handwork_payments.kit.errors import ErrorBody
from handwork_payments.runtime import Runtime

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_SECONDS = Histogram(
    "handwork_http_request_duration_seconds",
    "HTTP requests by method, route template (never an id) and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Requests that matched no route are counted under one name: a scanner's random paths
# must not create a time series each.
UNMATCHED = "unmatched"


def route_of(scope: Scope) -> str:
    """The matched route's template (`/api/v1/payments/{payment_id}`). FastAPI's included
    routers keep their routes' templates relative to the router's prefix (`/api/v1`): the
    prefix, which has no parameters here, is the request path's leading segments."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED
    segments, relative = scope["path"].split("/"), template.split("/")
    if ":path}" in template or len(segments) <= len(relative):
        return template
    return "/".join(segments[: len(segments) - len(relative) + 1]) + template


class HttpMetrics:
    """Times each HTTP request from its first byte in to its response's status out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            HTTP_SECONDS.labels(scope["method"], route_of(scope), str(status)).observe(
                time.perf_counter() - started
            )


class _Fetched(Collector):
    def __init__(self, fetched: list[Any]) -> None:
        self.fetched = fetched

    def collect(self) -> Any:
        return iter(self.fetched)


def registry_for(multiprocess_dir: str | None) -> CollectorRegistry:
    if multiprocess_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir)
    return registry


def process_registry() -> CollectorRegistry:
    """The samples of every process sharing the folder when prometheus-client started in
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before it was imported: its values
    are files there), this process's own otherwise, whatever the variable says now."""
    multiprocess = values.ValueClass is not values.MutexValue
    return registry_for(os.environ[MULTIPROC_ENV] if multiprocess else None)


def _authorized(runtime: Runtime, request: Request) -> bool:
    token = runtime.settings.metrics_token
    if not token:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "METRICS_TOKEN is set and was not given"},
    },
)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if not _authorized(runtime, request):
        return Response(
            '{"detail": "Not authenticated"}',
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with runtime.sessions() as session:
        business = CollectorRegistry()
        business.register(_Fetched(await families(session)))
    body = generate_latest(process_registry()) + generate_latest(business)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
