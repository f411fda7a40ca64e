"""The read API: NATS request/reply on ``apex.q.<name>``, queue group ``persistence``.

Every request is validated first (a missing or malformed tenant id is
``invalid_request``); every answer is a ``QueryReply``. Store failures count against
the store's circuit breaker and are answered ``store_unavailable`` (retryable).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from faststream.nats import NatsMessage, NatsRouter
from pydantic import BaseModel, ValidationError

from apex_contracts import ApexError, ErrorCode, InvalidInput, Unavailable, subjects
from apex_contracts.queries import (
    Q_AUDIT_LIST,
    Q_CURSOR_FLUSH,
    Q_CURSOR_GET,
    Q_EVENTS_ARCHIVE,
    Q_RUNS_GET,
    Q_RUNS_RECENT,
    Q_SLA_SUMMARY,
    Q_THREADS_GET,
    Q_THREADS_LIST,
    Q_USAGE_AGGREGATE,
    Q_USAGE_SUMMARY,
    AuditList,
    CursorFlush,
    CursorGet,
    EventsArchive,
    QueryReply,
    RunGet,
    RunsRecent,
    SlaSummary,
    ThreadGet,
    ThreadsList,
    UsageAggregate,
    UsageSummary,
)
from apex_persistence.analytics.usage import UsageLedger
from apex_persistence.api.sla import sla_answer
from apex_persistence.postgres.cursors import CursorStore
from apex_persistence.postgres.reads import HistoryReads
from apex_runtime import CircuitBreaker, InboundMessage, undecoded

log = logging.getLogger(__name__)
QUEUE_GROUP = "persistence"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    request: type[BaseModel]
    answer: Callable[[Any], Awaitable[BaseModel]]
    store: str
    breaker: CircuitBreaker
    failures: tuple[type[BaseException], ...]


class ReadApi:
    def __init__(
        self,
        history: HistoryReads,
        usage: UsageLedger,
        cursors: CursorStore,
        breakers: dict[str, CircuitBreaker],
        failures: dict[str, tuple[type[BaseException], ...]],
    ) -> None:
        def route(
            name: str, request: type[BaseModel], answer: Callable[[Any], Awaitable[BaseModel]], store: str
        ) -> Route:
            return Route(name, request, answer, store, breakers[store], failures[store])

        self.routes = [
            route(Q_THREADS_LIST, ThreadsList, history.threads_list, "postgres"),
            route(Q_THREADS_GET, ThreadGet, history.thread_get, "postgres"),
            route(Q_RUNS_GET, RunGet, history.run_get, "postgres"),
            route(Q_RUNS_RECENT, RunsRecent, history.runs_recent, "postgres"),
            route(Q_EVENTS_ARCHIVE, EventsArchive, history.events_archive, "postgres"),
            route(Q_AUDIT_LIST, AuditList, history.audit_list, "postgres"),
            route(Q_CURSOR_GET, CursorGet, cursors.get, "postgres"),
            route(Q_CURSOR_FLUSH, CursorFlush, cursors.flush, "postgres"),
            route(Q_USAGE_AGGREGATE, UsageAggregate, usage.aggregate, "clickhouse"),
            route(Q_USAGE_SUMMARY, UsageSummary, usage.summary, "clickhouse"),
            route(Q_SLA_SUMMARY, SlaSummary, sla_answer(usage), "clickhouse"),
        ]

    async def answer(self, route: Route, body: bytes) -> QueryReply:
        try:
            request = route.request.model_validate_json(body)
        except ValidationError as exc:
            return _failure(InvalidInput(f"invalid {route.name} request: {_brief(exc)}"))
        try:
            data = await route.breaker.call(lambda: route.answer(request), route.failures)
        except ApexError as exc:
            return _failure(exc)
        except route.failures as exc:
            log.warning("%s: %s unavailable: %r", route.name, route.store, exc)
            return _failure(Unavailable(f"{route.store} is unavailable", code=ErrorCode.STORE_UNAVAILABLE))
        return QueryReply(ok=True, data=data.model_dump(mode="json"))


def _failure(exc: ApexError) -> QueryReply:
    return QueryReply(ok=False, error=exc.info())


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors()[:5]
    )


# Queries of one route answered side by side (a tool asks several at once); the stores
# bound the real parallelism (the pool's connections, the engine's read threads).
QUERY_WORKERS = 8


def build_query_router(api: ReadApi) -> NatsRouter:
    router = NatsRouter()
    for route in api.routes:
        router.subscriber(
            subjects.query(route.name),
            queue=QUEUE_GROUP,
            max_workers=QUERY_WORKERS,
            title=f"query {route.name}",
            description=f"Read API {route.name}: {route.request.__name__} -> QueryReply",
            decoder=undecoded,
        )(_handler(api, route))
    return router


def _handler(api: ReadApi, route: Route) -> Callable[[NatsMessage], Awaitable[QueryReply]]:
    async def handle(msg: InboundMessage) -> QueryReply:
        return await api.answer(route, msg.body)

    handle.__name__ = f"query_{route.name.replace('.', '_')}"
    return handle
