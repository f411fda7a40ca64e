"""Asking a provider's usage API for one page, with every failure turned into a typed
error: a refused key is ``provider_auth_failed`` (not retryable: the admin must connect
again), 429 is ``provider_rate_limited`` (with the provider's ``Retry-After``), and a 5xx,
a timeout, a broken connection or a page that is not the documented JSON is
``provider_unavailable``. The provider's answer is never echoed beyond its status and a
short reason: a base URL is the tenant's to choose, its answers are not ours to show."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from apex_contracts import ErrorCode, InvalidInput, RateLimited, Unavailable

log = logging.getLogger(__name__)
DEFAULT_RETRY_AFTER_S = 60.0


async def get_page(
    http: httpx.AsyncClient,
    url: str,
    *,
    params: list[tuple[str, str | int | float | bool | None]],
    headers: dict[str, str],
    provider: str,
) -> dict[str, Any]:
    try:
        response = await http.get(url, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise Unavailable(f"{provider} did not answer in time.", code=ErrorCode.PROVIDER_UNAVAILABLE) from exc
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"{provider} could not be reached ({type(exc).__name__}).", code=ErrorCode.PROVIDER_UNAVAILABLE
        ) from exc
    status = response.status_code
    if status in (401, 403):
        raise InvalidInput(
            f"{provider} refused the admin key (HTTP {status}); connect again with an admin key "
            "that may read the organisation's usage.",
            code=ErrorCode.PROVIDER_AUTH_FAILED,
        )
    if status == 429:
        raise RateLimited(
            f"{provider} asked to slow down (HTTP 429); the sync resumes later.",
            code=ErrorCode.PROVIDER_RATE_LIMITED,
            retry_after_ms=int(_retry_after_s(response.headers.get("retry-after")) * 1000),
        )
    if status >= 500:
        raise Unavailable(f"{provider} answered HTTP {status}.", code=ErrorCode.PROVIDER_UNAVAILABLE)
    if status != 200:
        raise Unavailable(
            f"{provider} answered HTTP {status} to the usage request; check the connector's base URL.",
            code=ErrorCode.PROVIDER_UNAVAILABLE,
            retryable=False,
        )
    try:
        page = response.json()
    except ValueError as exc:
        raise Unavailable(
            f"{provider} answered with something that is not JSON.", code=ErrorCode.PROVIDER_UNAVAILABLE
        ) from exc
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise Unavailable(
            f"{provider} answered with a page of an unknown shape (no data list).",
            code=ErrorCode.PROVIDER_UNAVAILABLE,
        )
    return page


def _retry_after_s(value: str | None) -> float:
    try:
        return max(1.0, float(value)) if value else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S  # an HTTP date: wait the default instead of parsing it


def next_page(page: dict[str, Any]) -> str | None:
    """The cursor of the next page, None on the last one (both providers page alike)."""
    token = page.get("next_page")
    return str(token) if page.get("has_more") and token else None
