"""The gateway's /auth/* pass-through: what reaches the auth service (method, path, query,
body, the allowed headers, the caller's address in X-Forwarded-For), what comes back, and
what never passes (paths that climb out of /auth/, oversized bodies), and the typed error
when auth does not answer. The upstream is a real ASGI app behind httpx."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request, Response

from apex_cli.embedded import free_port
from apex_gateway import authproxy
from apex_gateway.errors import install_error_handlers


def upstream() -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def echo(path: str, request: Request) -> Response:
        seen: dict[str, Any] = {
            "method": request.method,
            "path": "/" + path,
            "query": str(request.query_params),
            "body": (await request.body()).decode(),
            "headers": dict(request.headers),
        }
        return Response(
            content=httpx.Response(200, json=seen).content,
            status_code=201,
            media_type="application/json",
            headers={"Cache-Control": "no-store", "Set-Cookie": "x=1", "X-Internal": "secret"},
        )

    return app


def gateway(auth_url: str, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(authproxy.router)
    app.state.auth_proxy = authproxy.AuthProxy(auth_url, httpx.AsyncClient(transport=transport))
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)), base_url="http://gateway"
    )


async def test_a_request_reaches_auth_with_only_what_it_needs() -> None:
    app = gateway("http://auth", httpx.ASGITransport(app=upstream(), client=("10.0.0.2", 1)))
    async with client(app) as http:
        answer = await http.post(
            "/auth/login?next=1",
            json={"email": "a@example.com"},
            headers={
                "Authorization": "Bearer t",
                "Cookie": "session=1",
                "X-Forwarded-For": "198.51.100.1",
            },
        )
    assert answer.status_code == 201
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/auth/login", "next=1")
    assert seen["body"] == '{"email":"a@example.com"}'
    assert seen["headers"]["authorization"] == "Bearer t"
    assert seen["headers"]["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"
    assert "cookie" not in seen["headers"]
    assert answer.headers["cache-control"] == "no-store"
    assert "set-cookie" not in answer.headers and "x-internal" not in answer.headers


async def test_paths_that_climb_out_of_auth_are_not_found() -> None:
    app = gateway("http://auth", httpx.ASGITransport(app=upstream()))
    async with client(app) as http:
        # httpx normalises literal dot segments; their escaped forms reach the app as dots
        for path in ("/auth/%2e%2e/metrics", "/auth/%2E%2E/%2e%2e/healthz", "/auth//x", "/auth/%2e/me"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"


async def test_an_oversized_body_is_refused_before_auth_sees_it() -> None:
    app = gateway("http://auth", httpx.ASGITransport(app=upstream()))
    async with client(app) as http:
        answer = await http.post("/auth/register", content=b"x" * (authproxy.MAX_BODY_BYTES + 1))
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


async def test_auth_not_answering_is_a_retryable_typed_error() -> None:
    app = gateway(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    async with client(app) as http:
        answer = await http.post("/auth/login", json={})
    assert answer.status_code == 503
    assert answer.json()["error"] == {
        "code": "service_unavailable",
        "retryable": True,
        "message": "The sign-in service is not answering; try again shortly.",
    }
