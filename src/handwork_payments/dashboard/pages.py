"""/dashboard's pages and assets. A page is a shell: its data comes from the API, fetched
by static/*.js with the signed-in user's token. The pages run under the service's HTML
Content-Security-Policy (scripts and styles from this service only, nothing inline)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


def _shell(page: str) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def shell(request: Request) -> HTMLResponse:
        return _page(request, page)

    return shell


# The pages that take nothing from their path: path -> page.
for path, page in {
    "": "overview",
    "/login": "login",
    "/queues": "queues",
    "/users": "users",
    "/me": "me",
}.items():
    router.add_api_route(path, _shell(page), methods=["GET"], name=page)


@router.get("/payments")
async def payment_lookup(request: Request) -> HTMLResponse:
    return _page(request, "payment", payment_id=None)


@router.get("/payments/{payment_id:int}")
async def payment(request: Request, payment_id: int) -> HTMLResponse:
    return _page(request, "payment", payment_id=payment_id)


def install_dashboard(app: FastAPI) -> None:
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.include_router(router)
