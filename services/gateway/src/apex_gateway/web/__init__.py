"""The chat page (``/``) and the health dashboard (``/dashboard``): static HTML, CSS and
JavaScript modules served by the gateway itself, with no build step and nothing loaded
from elsewhere. The pages hold no secret: they sign in through ``/auth/*`` (proxied) and
use the same API and WebSocket as any client.

Pages are sent with a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script, no framing), so a message that slipped past the escaping markdown
renderer still could not run code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def chat_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.get("/dashboard")
async def dashboard_page() -> FileResponse:
    """The page is public; every figure on it comes from admin-only endpoints."""
    return FileResponse(STATIC / "dashboard.html", headers=PAGE_HEADERS)


class _Assets(StaticFiles):
    """Static files revalidated on each load (ETag), so a deploy shows at once."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", _Assets(directory=STATIC), name="static")
