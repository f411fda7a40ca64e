"""Postgres DSNs as operators write them (libpq's ``sslmode``, ``sslrootcert``,
``sslcert``, ``sslkey``) for SQLAlchemy over asyncpg, which passes query parameters to
``asyncpg.connect`` as keywords and so refuses ``sslmode`` outright. The TLS parameters
are taken out of the URL and turned into asyncpg's ``ssl`` argument with libpq's
meaning: ``verify-full`` checks the server's certificate against ``sslrootcert`` (or the
system's roots with ``sslrootcert=system`` or none given) *and* its host name;
``verify-ca`` checks the certificate only; ``require`` encrypts without checking."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TLS_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword")
_UNVERIFIED_MODES: dict[str, str | bool] = {
    "disable": False,
    "allow": "allow",
    "prefer": "prefer",
    "require": "require",
}


def split_tls(dsn: str) -> tuple[str, ssl.SSLContext | str | bool | None]:
    """The DSN without libpq's TLS parameters, and the ``ssl`` argument for asyncpg
    (None: asyncpg's default). Raises ValueError for an unknown ``sslmode``."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tls = {key: value for key, value in query if key in TLS_PARAMETERS}
    kept = [(key, value) for key, value in query if key not in TLS_PARAMETERS]
    stripped = urlunsplit(parts._replace(query=urlencode(kept)))
    mode = tls.get("sslmode")
    if mode is None:
        return stripped, None
    if mode in _UNVERIFIED_MODES:
        return stripped, _UNVERIFIED_MODES[mode]
    if mode not in ("verify-ca", "verify-full"):
        raise ValueError(f"sslmode={mode} is not one of libpq's modes")
    root = tls.get("sslrootcert")
    context = ssl.create_default_context(cafile=None if root in (None, "", "system") else root)
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    if tls.get("sslcert"):
        context.load_cert_chain(tls["sslcert"], tls.get("sslkey") or None, tls.get("sslpassword") or None)
    return stripped, context
