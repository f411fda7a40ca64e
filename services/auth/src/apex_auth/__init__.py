"""Apex auth: users, tenants, sessions, token issue, refresh and revocation, and the JWKS.

Run it with ``python -m apex_auth`` (``migrate``, ``rotate-keys``); embed it with
``open_service`` and ``build_app``. See docs/auth.md.
"""

from apex_auth.bootstrap import build_app, open_service, rotate_keys, run_background, serve
from apex_auth.keys import KeyRing, public_jwk
from apex_auth.migrate import current_revision, migrate
from apex_auth.passwords import Argon2Params, PasswordHashing, check_policy
from apex_auth.service import AuthService
from apex_auth.settings import AuthSettings
from apex_auth.tokens import AccessTokens, Subject

__all__ = [
    "AccessTokens",
    "Argon2Params",
    "AuthService",
    "AuthSettings",
    "KeyRing",
    "PasswordHashing",
    "Subject",
    "build_app",
    "check_policy",
    "current_revision",
    "migrate",
    "open_service",
    "public_jwk",
    "rotate_keys",
    "run_background",
    "serve",
]
