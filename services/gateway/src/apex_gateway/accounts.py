"""The auth service's account closure, as the gateway asks for it when a user erases
themselves: ``DELETE /auth/me`` with the user's own token, so auth decides for itself
whose account it closes."""

from __future__ import annotations

import logging

import httpx

from apex_contracts import AuthFailed, ErrorCode, Unavailable

log = logging.getLogger(__name__)


class AuthAccounts:
    def __init__(self, auth_url: str, http: httpx.AsyncClient, timeout_s: float = 15.0) -> None:
        self._url = auth_url.rstrip("/") + "/auth/me"
        self._http = http
        self._timeout_s = timeout_s

    async def close(self, token: str) -> None:
        """Closes the account ``token`` belongs to: its sessions revoked, its personal
        records deleted. AuthFailed when auth refuses the token (the account is already
        closed); Unavailable (retryable) when auth does not answer or fails."""
        try:
            answer = await self._http.delete(
                self._url, headers={"Authorization": f"Bearer {token}"}, timeout=self._timeout_s
            )
        except httpx.HTTPError as exc:
            raise Unavailable(
                "The sign-in service did not answer; the account is still open. Try again shortly.",
                code=ErrorCode.SERVICE_UNAVAILABLE,
            ) from exc
        if answer.status_code == 204:
            return
        if answer.status_code == 401:
            raise AuthFailed(code=ErrorCode.SESSION_REVOKED)
        log.warning("account closure answered %d: %s", answer.status_code, answer.text[:200])
        raise Unavailable(
            "The sign-in service could not close the account; it is still open. Try again shortly.",
            code=ErrorCode.SERVICE_UNAVAILABLE,
        )
