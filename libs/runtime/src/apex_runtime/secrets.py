"""Secrets that must not reach production: template placeholders and the defaults the
repository ships for laptops. A production process refuses to start with one of them
(its settings class says which variable), so a forgotten value is a crash loop with a
message, never a platform running with a password everybody can read on GitHub."""

from __future__ import annotations

from urllib.parse import urlsplit

# Lower-case fragments of every value a template or a local default in this repository
# uses, and of the usual stand-ins people type.
PLACEHOLDER_MARKERS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replace_me",
    "placeholder",
    "local-only",
    "example",
    "secret-here",
    "your-",
    "xxxx",
    "todo",
)
# Exact values that are defaults somewhere (images, tutorials), whatever their case.
DEFAULT_VALUES = frozenset({"postgres", "password", "apex", "admin", "root", "secret", "default", "test"})


def is_placeholder(value: str | None) -> bool:
    """True for an empty value, a template placeholder or a well-known default."""
    if value is None or not value.strip():
        return True
    lowered = value.strip().lower()
    return lowered in DEFAULT_VALUES or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def url_password(url: str) -> str | None:
    """The password inside a URL or DSN (``scheme://user:password@host/...``), if any."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def placeholder_in_url(url: str | None) -> bool:
    """True when the URL carries a password that is a placeholder or a default (a URL
    without a password is not judged here: some stores authenticate otherwise)."""
    if not url:
        return False
    password = url_password(url)
    return password is not None and is_placeholder(password)
