"""Token verification lives in ``apex_runtime.tokens`` (the gateway and ingest share it)."""

from apex_runtime.tokens import ExternalIssuer, KeySet, Principal, Revocations, TokenVerifier

__all__ = ["ExternalIssuer", "KeySet", "Principal", "Revocations", "TokenVerifier"]
