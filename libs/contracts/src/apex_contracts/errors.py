"""Every error a person or a program can meet in Apex, with a stable code.

Each code has one entry in ``CATALOGUE``: the HTTP status it maps to, whether the same
request may succeed if retried, a message a person understands, and where it arises.
docs/errors.md is generated from this table (and checked by a test).

The exception tree::

    ApexError                      code, message, retryable, details
    ├── InvalidInput               the request itself is wrong (never retryable)
    │   └── InvalidId              a malformed prefixed id
    ├── AuthFailed                 4401 / 401: missing, invalid, expired token, revoked session
    ├── Forbidden                  4403 / 403
    ├── NotFound                   does not exist *for this caller* (other tenants' data too)
    ├── Conflict                   state does not allow it (run not active, duplicate)
    ├── RateLimited                slow down; carries retry_after_ms
    ├── LimitExceeded              a run budget or a concurrency cap
    ├── DeadlineExceeded           a timeout (step, tool, run, LLM)
    ├── Unavailable                a dependency is down (bus, store, LLM); retryable
    ├── Cancelled                  the run was cancelled
    └── InternalError              a defect: logged with a reference, never silent
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class ErrorCode(StrEnum):
    # handshake and session (close codes 4401 / 4403)
    TOKEN_MISSING = "token_missing"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    SESSION_REVOKED = "session_revoked"
    FORBIDDEN = "forbidden"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    INVALID_CREDENTIALS = "invalid_credentials"
    # input
    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FRAME = "invalid_frame"
    INVALID_ID = "invalid_id"
    INVALID_REQUEST = "invalid_request"
    INVALID_HANDSHAKE = "invalid_handshake"
    FRAME_TOO_LARGE = "frame_too_large"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    # lookup and state
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RUN_NOT_ACTIVE = "run_not_active"
    ALREADY_EXISTS = "already_exists"
    # flow control and delivery
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    RESYNC_REQUIRED = "resync_required"
    SLOW_CONSUMER = "slow_consumer"
    REPLAY_INCOMPLETE = "replay_incomplete"
    # run limits
    CONCURRENCY_LIMIT = "concurrency_limit"
    BUDGET_EXCEEDED = "budget_exceeded"
    RUN_TIMEOUT = "run_timeout"
    STEP_TIMEOUT = "step_timeout"
    RUN_CANCELLED = "run_cancelled"
    RUN_STALLED = "run_stalled"
    POISON_COMMAND = "poison_command"
    # tools and agents
    TOOL_UNKNOWN = "tool_unknown"
    TOOL_INPUT_INVALID = "tool_input_invalid"
    TOOL_TIMEOUT = "tool_timeout"
    TOOL_FAILED = "tool_failed"
    AGENT_FAILED = "agent_failed"
    LLM_UNAVAILABLE = "llm_unavailable"
    LLM_TIMEOUT = "llm_timeout"
    LLM_BAD_RESPONSE = "llm_bad_response"
    # dependencies
    BUS_UNAVAILABLE = "bus_unavailable"
    PUBLISH_FAILED = "publish_failed"
    STORE_UNAVAILABLE = "store_unavailable"
    # provider usage connectors
    PROVIDER_AUTH_FAILED = "provider_auth_failed"
    PROVIDER_RATE_LIMITED = "provider_rate_limited"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SHUTTING_DOWN = "shutting_down"
    AUTH_BUSY = "auth_busy"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    status: int
    retryable: bool
    message: str
    arises: str


_E = ErrorSpec
CATALOGUE: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.TOKEN_MISSING: _E(
        401, False, "Sign in first: no access token was sent.", "gateway handshake, HTTP API"
    ),
    ErrorCode.TOKEN_INVALID: _E(401, False, "The access token is not valid.", "gateway handshake, HTTP API"),
    ErrorCode.TOKEN_EXPIRED: _E(
        401,
        True,
        "The access token has expired; refresh it and reconnect.",
        "gateway handshake, HTTP API, an open socket whose token expired (close 4401; send `session.refresh` before)",
    ),
    ErrorCode.SESSION_REVOKED: _E(
        401,
        False,
        "This session was signed out.",
        "gateway (handshake; open sockets within the revocation re-check interval), auth",
    ),
    ErrorCode.FORBIDDEN: _E(403, False, "You are not allowed to do that.", "gateway, auth"),
    ErrorCode.ORIGIN_NOT_ALLOWED: _E(403, False, "This site is not allowed to connect.", "gateway handshake"),
    ErrorCode.INVALID_CREDENTIALS: _E(401, False, "Email or password is wrong.", "auth login"),
    ErrorCode.INVALID_JSON: _E(400, False, "The frame is not valid JSON.", "gateway frame parser"),
    ErrorCode.UNKNOWN_TYPE: _E(400, False, "Unknown frame type.", "gateway frame parser"),
    ErrorCode.INVALID_FRAME: _E(
        400, False, "A field is missing or has the wrong type.", "gateway frame parser"
    ),
    ErrorCode.INVALID_ID: _E(400, False, "An id is malformed.", "every boundary that takes an id"),
    ErrorCode.INVALID_REQUEST: _E(422, False, "The request is not valid.", "HTTP API"),
    ErrorCode.INVALID_HANDSHAKE: _E(
        400,
        False,
        "The WebSocket handshake is malformed (several tickets or tokens, an unreadable query).",
        "gateway handshake (close 4400)",
    ),
    ErrorCode.FRAME_TOO_LARGE: _E(413, False, "The frame is larger than the limit.", "gateway (close 1009)"),
    ErrorCode.PAYLOAD_TOO_LARGE: _E(
        413, False, "The upload is larger than the limit.", "ingest usage upload and OTLP"
    ),
    ErrorCode.NOT_FOUND: _E(404, False, "Not found.", "gateway, persistence read API"),
    ErrorCode.CONFLICT: _E(409, False, "The request conflicts with the current state.", "gateway, auth"),
    ErrorCode.RUN_NOT_ACTIVE: _E(409, False, "The run has already ended.", "orchestrator cancel"),
    ErrorCode.ALREADY_EXISTS: _E(409, False, "It already exists.", "auth register, invites"),
    ErrorCode.RATE_LIMITED: _E(429, True, "Too many requests; slow down.", "gateway, auth"),
    ErrorCode.TOO_MANY_CONNECTIONS: _E(
        429, True, "Too many open connections for this user.", "gateway handshake"
    ),
    ErrorCode.RESYNC_REQUIRED: _E(
        409, True, "You fell behind; resubscribe from your last seq.", "gateway send queue"
    ),
    ErrorCode.SLOW_CONSUMER: _E(
        429,
        True,
        "You did not read your frames fast enough; reconnect and resume from your last seq.",
        "gateway send queue (close 4408)",
    ),
    ErrorCode.REPLAY_INCOMPLETE: _E(
        410, False, "Part of the history is no longer available.", "gateway replay"
    ),
    ErrorCode.CONCURRENCY_LIMIT: _E(
        429,
        True,
        "You already have the maximum number of runs in progress.",
        "orchestrator admission (`run.failed` under the `reject` double-texting policy)",
    ),
    ErrorCode.BUDGET_EXCEEDED: _E(
        422,
        False,
        "The run used up its budget (tool calls or tokens).",
        "agents (a step would pass the run's tool-call or token budget), orchestrator (`run.failed`)",
    ),
    ErrorCode.RUN_TIMEOUT: _E(
        504, True, "The run took longer than allowed.", "orchestrator (wall-clock time from `run.accepted`)"
    ),
    ErrorCode.STEP_TIMEOUT: _E(
        504,
        True,
        "An agent step took longer than allowed.",
        "orchestrator (from the step's first `agent_started`), agents (the step's deadline)",
    ),
    ErrorCode.RUN_CANCELLED: _E(
        409,
        False,
        "The run was cancelled.",
        "agents and tools (interrupted work of a cancelled or ended run)",
    ),
    ErrorCode.RUN_STALLED: _E(
        504,
        True,
        "The run stopped making progress.",
        "orchestrator sweeper (no driver, no event for `stall_after_s`)",
    ),
    ErrorCode.POISON_COMMAND: _E(
        500,
        False,
        "A command failed on every delivery.",
        "every command consumer (dead-lettered to `apex.dlq.<command>`)",
    ),
    ErrorCode.TOOL_UNKNOWN: _E(400, False, "No such tool.", "tools"),
    ErrorCode.TOOL_INPUT_INVALID: _E(400, False, "The tool arguments are not valid.", "tools"),
    ErrorCode.TOOL_TIMEOUT: _E(504, True, "The tool took too long.", "tools"),
    ErrorCode.TOOL_FAILED: _E(500, True, "The tool failed.", "tools"),
    ErrorCode.AGENT_FAILED: _E(500, True, "An agent failed.", "agents"),
    ErrorCode.LLM_UNAVAILABLE: _E(503, True, "The language model is unavailable.", "agents LLM client"),
    ErrorCode.LLM_TIMEOUT: _E(504, True, "The language model did not answer in time.", "agents LLM client"),
    ErrorCode.LLM_BAD_RESPONSE: _E(
        502, True, "The language model answered with something unusable.", "agents LLM client"
    ),
    ErrorCode.BUS_UNAVAILABLE: _E(503, True, "The message bus is unavailable.", "every service"),
    ErrorCode.PUBLISH_FAILED: _E(
        503,
        True,
        "An event could not be recorded.",
        "every publisher (after its retries; the command is retried)",
    ),
    ErrorCode.STORE_UNAVAILABLE: _E(503, True, "A data store is unavailable.", "persistence, auth"),
    ErrorCode.PROVIDER_AUTH_FAILED: _E(
        422,
        False,
        "The provider refused the admin key; connect again with a valid one.",
        "ingest provider connectors (the provider answered 401 or 403)",
    ),
    ErrorCode.PROVIDER_RATE_LIMITED: _E(
        429,
        True,
        "The provider asked to slow down; the sync resumes later.",
        "ingest provider connectors (the provider answered 429)",
    ),
    ErrorCode.PROVIDER_UNAVAILABLE: _E(
        502,
        True,
        "The provider's usage API did not answer properly; the sync resumes later.",
        "ingest provider connectors (5xx, timeouts, connection errors, unreadable pages)",
    ),
    ErrorCode.SERVICE_UNAVAILABLE: _E(503, True, "A service did not answer.", "gateway, tools"),
    ErrorCode.SHUTTING_DOWN: _E(
        503, True, "The server is restarting; reconnect.", "gateway drain (close 1012)"
    ),
    ErrorCode.AUTH_BUSY: _E(
        503,
        True,
        "Too many sign-ins at once; try again in a moment.",
        "auth (every password-hashing slot busy beyond the wait; `Retry-After` says when)",
    ),
    ErrorCode.INTERNAL_ERROR: _E(500, True, "Something went wrong on our side.", "anywhere"),
}


class ErrorInfo(BaseModel):
    """The wire form of an error: in events, frames and HTTP bodies."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str
    message: str
    retryable: bool
    details: dict[str, Any] | None = None


class ApexError(Exception):
    """Base of every error Apex raises on purpose."""

    default_code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str | None = None,
        *,
        code: ErrorCode | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = code or self.default_code
        spec = CATALOGUE[self.code]
        self.message = message or spec.message
        self.retryable = spec.retryable if retryable is None else retryable
        self.details = details
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return CATALOGUE[self.code].status

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code.value, message=self.message, retryable=self.retryable, details=self.details
        )

    @classmethod
    def from_info(cls, info: ErrorInfo) -> ApexError:
        try:
            code = ErrorCode(info.code)
        except ValueError:
            code = ErrorCode.INTERNAL_ERROR
        return _BY_CODE.get(code, ApexError)(
            info.message, code=code, retryable=info.retryable, details=info.details
        )


class InvalidInput(ApexError):
    default_code = ErrorCode.INVALID_REQUEST


class InvalidId(InvalidInput):
    default_code = ErrorCode.INVALID_ID


class AuthFailed(ApexError):
    default_code = ErrorCode.TOKEN_INVALID


class Forbidden(ApexError):
    default_code = ErrorCode.FORBIDDEN


class NotFound(ApexError):
    default_code = ErrorCode.NOT_FOUND


class Conflict(ApexError):
    default_code = ErrorCode.CONFLICT


class RateLimited(ApexError):
    default_code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str | None = None, *, retry_after_ms: int, **kw: Any) -> None:
        details = {**(kw.pop("details", None) or {}), "retry_after_ms": retry_after_ms}
        super().__init__(message, details=details, **kw)
        self.retry_after_ms = retry_after_ms


class LimitExceeded(ApexError):
    default_code = ErrorCode.BUDGET_EXCEEDED


class DeadlineExceeded(ApexError):
    default_code = ErrorCode.STEP_TIMEOUT


class Unavailable(ApexError):
    default_code = ErrorCode.SERVICE_UNAVAILABLE


class Cancelled(ApexError):
    default_code = ErrorCode.RUN_CANCELLED


class InternalError(ApexError):
    default_code = ErrorCode.INTERNAL_ERROR


_BY_CODE: dict[ErrorCode, type[ApexError]] = {
    ErrorCode.INVALID_ID: InvalidId,
    ErrorCode.INVALID_REQUEST: InvalidInput,
    ErrorCode.INVALID_FRAME: InvalidInput,
    ErrorCode.TOOL_INPUT_INVALID: InvalidInput,
    ErrorCode.TOKEN_INVALID: AuthFailed,
    ErrorCode.TOKEN_MISSING: AuthFailed,
    ErrorCode.TOKEN_EXPIRED: AuthFailed,
    ErrorCode.SESSION_REVOKED: AuthFailed,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.RUN_NOT_ACTIVE: Conflict,
    ErrorCode.BUDGET_EXCEEDED: LimitExceeded,
    ErrorCode.CONCURRENCY_LIMIT: LimitExceeded,
    ErrorCode.STEP_TIMEOUT: DeadlineExceeded,
    ErrorCode.RUN_TIMEOUT: DeadlineExceeded,
    ErrorCode.TOOL_TIMEOUT: DeadlineExceeded,
    ErrorCode.LLM_TIMEOUT: DeadlineExceeded,
    ErrorCode.BUS_UNAVAILABLE: Unavailable,
    ErrorCode.STORE_UNAVAILABLE: Unavailable,
    ErrorCode.SERVICE_UNAVAILABLE: Unavailable,
    ErrorCode.AUTH_BUSY: Unavailable,
    ErrorCode.LLM_UNAVAILABLE: Unavailable,
    ErrorCode.PROVIDER_AUTH_FAILED: InvalidInput,
    ErrorCode.PROVIDER_UNAVAILABLE: Unavailable,
    ErrorCode.RUN_CANCELLED: Cancelled,
}
