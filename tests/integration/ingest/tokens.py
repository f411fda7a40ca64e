"""Access tokens as the auth service signs them (EdDSA, ``kid``, every required claim),
from a key of the test's own whose JWKS is served on loopback."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apex_contracts import auth, new_id


class TokenIssuer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex[:12]

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]}

    def app(self) -> Starlette:
        async def jwks(_: Request) -> JSONResponse:
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route(auth.JWKS_PATH, jwks)])

    def token(
        self, tenant_id: str, user_id: str, *, roles: tuple[str, ...] = ("admin",), session_id: str = ""
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": auth.ISSUER,
            "aud": auth.AUDIENCE,
            "sub": user_id,
            "tid": tenant_id,
            "sid": session_id or new_id("ses"),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "typ": "access",
            "roles": list(roles),
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})
