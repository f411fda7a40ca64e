"""The gateway: client WebSockets (apex.v1), the HTTP API, the chat page."""

from apex_gateway.app import create_app, main
from apex_gateway.settings import GatewaySettings
from apex_gateway.tokens import Principal, TokenVerifier

__all__ = ["GatewaySettings", "Principal", "TokenVerifier", "create_app", "main"]
