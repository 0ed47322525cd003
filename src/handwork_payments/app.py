"""The FastAPI application: routers, the one error handler, health, start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from handwork_payments.dashboard.pages import install_dashboard
from handwork_payments.http.docs import install_docs
from handwork_payments.http.headers import SecurityHeaders
from handwork_payments.http.idempotency import IdempotencyMiddleware
from handwork_payments.http.limits import RequestLimits
from handwork_payments.http.metrics import HttpMetrics
from handwork_payments.http.metrics import router as metrics_router
from handwork_payments.kit.errors import DomainError, ErrorBody
from handwork_payments.providers import Mode, provider_modes
from handwork_payments.runtime import Runtime
from handwork_payments.settings import get_settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
OPENAPI_URL = "/openapi.json"

# Every 422 is rendered by `validation_error` below as {"detail": "..."}: declared so,
# in place of FastAPI's default ({"detail": [{"loc", "msg", "type"}]}). 413 and the JSON
# depth's 422 come from http.limits, before any endpoint.
MALFORMED: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Request body larger than MAX_REQUEST_BYTES"},
    422: {"model": ErrorBody, "description": "Malformed input"},
}


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    providers: dict[str, Mode]


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "Invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(IntegrityError)
    async def integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
        # A unique or check constraint caught a race the code let through: the change was
        # rolled back, so the caller may look again and retry.
        log.warning("integrity error: %s", exc.orig)
        return JSONResponse(
            {"detail": "The request conflicted with a concurrent change; retry it"},
            status_code=409,
        )

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        log.exception("database error", exc_info=exc)
        return JSONResponse({"detail": "Database unavailable; retry later"}, status_code=503)


def api_routers() -> list[APIRouter]:
    """The API's routers in matching order, each included in the app under API_PREFIX.
    Included directly, not through a router of routers: FastAPI matches an included
    router's routes again at each level it is nested in (measured: a tenth of a read's
    CPU went to routing with the routers two levels deep)."""
    from handwork_payments.accounts.endpoints import router as accounts
    from handwork_payments.admin.endpoints import router as admin
    from handwork_payments.admin.payment_method_domains import router as wallet_domains
    from handwork_payments.admin.story import router as story
    from handwork_payments.analytics.endpoints import router as analytics
    from handwork_payments.auth.endpoints import router as auth
    from handwork_payments.bookings.endpoints import router as bookings
    from handwork_payments.connect.endpoints import router as connect
    from handwork_payments.disputes.endpoints import router as disputes
    from handwork_payments.disputes.evidence_endpoints import router as chargebacks
    from handwork_payments.events.endpoints import router as events
    from handwork_payments.losses.endpoints import router as losses
    from handwork_payments.payments.endpoints import router as payments
    from handwork_payments.payments.refund_endpoints import router as refunds
    from handwork_payments.payouts.endpoints import router as payouts
    from handwork_payments.privacy.endpoints import router as privacy
    from handwork_payments.recurring.endpoints import router as recurring
    from handwork_payments.risk.endpoints import router as risk
    from handwork_payments.webhooks.endpoints import router as webhooks

    # Fixed paths under /payments (disputes, payouts, refund, summary, webhooks) come
    # before the payments router's /payments/{payment_id}.
    routers = (disputes, payouts, connect, refunds, analytics, webhooks, payments, admin)
    return [
        auth,
        bookings,
        *routers,
        events,
        story,
        losses,
        risk,
        chargebacks,
        privacy,
        accounts,
        wallet_domains,
        recurring,
    ]


def create_app(runtime: Runtime | None = None) -> FastAPI:
    """With a runtime (tests), the app uses it as it is; without one (`serve`), start-up
    builds it from the environment and the lifespan owns it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        from handwork_payments.startup import started_runtime

        async with started_runtime() as built:
            app.state.runtime = built
            yield

    settings = runtime.settings if runtime is not None else get_settings()
    app = FastAPI(
        title="Handwork Payments",
        version="0.1.0",
        description="Escrow payments for services marketplaces: Stripe and PayPal.",
        lifespan=lifespan,
        openapi_url=OPENAPI_URL if settings.serve_docs else None,
        docs_url=None,  # http.docs serves its own, from local assets
        redoc_url=None,
    )
    if runtime is not None:
        app.state.runtime = runtime
    # The last added runs first: headers on every answer, limits before anything reads.
    app.add_middleware(IdempotencyMiddleware, runtime=lambda: app.state.runtime)
    app.add_middleware(RequestLimits, max_bytes=settings.max_request_bytes)
    app.add_middleware(SecurityHeaders, private_prefix=API_PREFIX)
    app.add_middleware(HttpMetrics)
    _install_error_handlers(app)
    for router in api_routers():
        app.include_router(router, prefix=API_PREFIX, responses=MALFORMED)
    app.include_router(metrics_router)
    if settings.serve_docs:
        install_docs(app, OPENAPI_URL)
    install_dashboard(app)
    modes = runtime.providers.modes() if runtime is not None else provider_modes(settings)
    if "simulated" in modes.values():
        # The buyer's side of the simulators (Stripe.js confirmation, PayPal approval).
        from handwork_payments.http.simulator import router as simulator

        app.include_router(simulator, prefix=API_PREFIX, responses=MALFORMED)

    @app.get(
        "/health",
        tags=["operations"],
        responses={
            200: {"model": Health},
            503: {"model": Health, "description": "The database does not answer"},
        },
    )
    async def health(request: Request) -> JSONResponse:
        current: Runtime = request.app.state.runtime
        database = "ok"
        try:
            async with current.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            database = "unavailable"
        body = {
            "status": "ok" if database == "ok" else "degraded",
            "database": database,
            "providers": current.providers.modes(),
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    return app


def create_served_app() -> FastAPI:
    """`serve`'s factory, called in each of its processes (uvicorn spawns them)."""
    from handwork_payments.logs import configure

    configure()
    return create_app()
