"""A Python client for Apex: HTTP (register, log in, API), the apex.v1 WebSocket with
reconnect and resume, and the assistant's streamed answers folded from events."""

from apex_client.answers import Answers
from apex_client.backoff import Backoff, full_jitter
from apex_client.http import ApexHttp
from apex_client.socket import ApexSocket

__all__ = ["Answers", "ApexHttp", "ApexSocket", "Backoff", "full_jitter"]
