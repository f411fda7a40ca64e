"""A Python client for Apex: HTTP (register, log in, API) and the apex.v1 WebSocket with
reconnect and resume."""

from apex_client.backoff import Backoff, full_jitter
from apex_client.http import ApexHttp
from apex_client.socket import ApexSocket

__all__ = ["ApexHttp", "ApexSocket", "Backoff", "full_jitter"]
