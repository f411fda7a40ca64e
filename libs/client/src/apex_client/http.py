"""The HTTP side of a client: register, log in, refresh, and call the API."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import httpx
import orjson

from apex_contracts import ApexError, ErrorCode, ErrorInfo
from apex_contracts.auth import TokenPair


def refresh_at(token: str) -> float | None:
    """When (epoch seconds) to refresh an access token: a minute before it expires, or
    at three quarters of a short lifetime. None when the token has no readable ``exp``
    (read without verifying: only to schedule, never to trust)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp, iat = float(claims["exp"]), float(claims.get("iat", claims["exp"] - 900))
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error, orjson.JSONDecodeError):
        return None
    return exp - min(60.0, (exp - iat) * 0.25)


class ApexHttp:
    def __init__(self, auth_url: str, gateway_url: str, *, timeout: float = 10.0) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.gateway_url = gateway_url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout)
        self.tokens: TokenPair | None = None

    async def __aenter__(self) -> ApexHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def register(self, email: str, password: str, tenant: str) -> TokenPair:
        body = await self._call(
            "POST",
            f"{self.auth_url}/auth/register",
            json={"email": email, "password": password, "tenant": tenant},
        )
        self.tokens = TokenPair.model_validate(body)
        return self.tokens

    async def login(self, email: str, password: str) -> TokenPair:
        body = await self._call(
            "POST", f"{self.auth_url}/auth/login", json={"email": email, "password": password}
        )
        self.tokens = TokenPair.model_validate(body)
        return self.tokens

    async def login_or_register(self, email: str, password: str, tenant: str) -> TokenPair:
        try:
            return await self.login(email, password)
        except ApexError as exc:
            if exc.code not in (ErrorCode.INVALID_CREDENTIALS, ErrorCode.TOKEN_INVALID, ErrorCode.NOT_FOUND):
                raise
        return await self.register(email, password, tenant)

    async def refresh(self) -> TokenPair:
        """A new token pair for the same session (the refresh token rotates)."""
        if self.tokens is None:
            raise ApexError("log in first", code=ErrorCode.TOKEN_MISSING)
        body = await self._call(
            "POST", f"{self.auth_url}/auth/refresh", json={"refresh_token": self.tokens.refresh_token}
        )
        self.tokens = TokenPair.model_validate(body)
        return self.tokens

    async def fresh_token(self) -> str:
        """The access token, refreshed first when it is due: the token source to give
        ``ApexSocket`` so that it reconnects and refreshes in-band with a valid token."""
        due = refresh_at(self.access_token)
        if due is not None and time.time() >= due:
            await self.refresh()
        return self.access_token

    @property
    def access_token(self) -> str:
        if self.tokens is None:
            raise ApexError("log in first", code=ErrorCode.TOKEN_MISSING)
        return self.tokens.access_token

    async def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.access_token}", **kwargs.pop("headers", {})}
        return await self._call(method, f"{self.gateway_url}{path}", headers=headers, **kwargs)

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ApexError(f"{url} did not answer: {exc}", code=ErrorCode.SERVICE_UNAVAILABLE) from exc
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            info = (
                ErrorInfo.model_validate(error)
                if error
                else ErrorInfo(
                    code=ErrorCode.INTERNAL_ERROR, message=f"HTTP {response.status_code}", retryable=True
                )
            )
            raise ApexError.from_info(info)
        return body
