"""/dashboard's pages and assets. A page is a shell: its data comes from the API, fetched
by static/*.js with the signed-in user's token. The pages run under the service's HTML
Content-Security-Policy (scripts and styles from this service only, nothing inline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = "/dashboard/static"

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/dashboard", include_in_schema=False)

# page name (its template) -> title; the navigation lists them in this order.
PAGES = {
    "overview": "Overview",
    "queues": "Queues",
    "payment": "Payment story",
    "users": "Users",
    "me": "My account",
}


def _page(request: Request, page: str, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        f"{page}.html",
        {"page": page, "title": PAGES.get(page, "Sign in"), "pages": PAGES, "static": STATIC}
        | context,
    )


@router.get("")
async def overview(request: Request) -> HTMLResponse:
    return _page(request, "overview")


@router.get("/login")
async def login(request: Request) -> HTMLResponse:
    return _page(request, "login")


@router.get("/queues")
async def queues(request: Request) -> HTMLResponse:
    return _page(request, "queues")


@router.get("/payments")
async def payment_lookup(request: Request) -> HTMLResponse:
    return _page(request, "payment", payment_id=None)


@router.get("/payments/{payment_id:int}")
async def payment(request: Request, payment_id: int) -> HTMLResponse:
    return _page(request, "payment", payment_id=payment_id)


@router.get("/users")
async def users(request: Request) -> HTMLResponse:
    return _page(request, "users")


@router.get("/me")
async def me(request: Request) -> HTMLResponse:
    return _page(request, "me")


def install_dashboard(app: FastAPI) -> None:
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.include_router(router)
