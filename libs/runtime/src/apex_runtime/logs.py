"""Structured logs: one JSON object per line, carrying the tenant and run ids of whatever
the process is doing (set with ``log_context``) and, while a span is current, its
``trace_id`` and ``span_id`` (a run's trace id is derived from the run id, see
``apex_runtime.tracing``)."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

from apex_runtime.tracing import current_ids

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("apex_log_context")


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    current = _context.get({})
    token = _context.set({**current, **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get({}),
        }
        ids = current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("faststream", "apex.faststream", "uvicorn.access", "uvicorn.error", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
