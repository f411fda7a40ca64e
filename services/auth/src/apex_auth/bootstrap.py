"""The composition root: builds settings' adapters (Postgres, Redis, NATS), the ports
over them, the FastAPI app, and runs the process. Nothing here runs at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError

from apex_auth.accounts import Accounts
from apex_auth.api import jwks_router, router
from apex_auth.audit import AuditRelay
from apex_auth.closure import AccountClosure
from apex_auth.db import Database, check_reachable, is_reachable, make_engine, redacted
from apex_auth.errors import install_error_handlers
from apex_auth.keys import KeyRing
from apex_auth.migrate import migrate
from apex_auth.passwords import Argon2Params, PasswordHashing
from apex_auth.revocation import Revocations
from apex_auth.service import AuthService
from apex_auth.serviceaccounts.api import router as service_accounts_router
from apex_auth.serviceaccounts.store import ServiceAccounts
from apex_auth.sessions import Sessions
from apex_auth.settings import AuthSettings
from apex_auth.throttle import Limit, Throttle
from apex_auth.tokens import AccessTokens
from apex_contracts import ErrorCode, Unavailable
from apex_runtime import Bus, Health, ServiceHost, configure_logging, heartbeat_loop, ops_routes
from apex_runtime.clientaddr import trusted_networks
from apex_runtime.natsissuer import AccountIssuer

log = logging.getLogger(__name__)

SERVICE = "auth"
_CHECK_TIMEOUT_S = 2.0


def limits(settings: AuthSettings) -> dict[str, Limit]:
    return {
        "login_account": Limit(
            "login_account", settings.auth_login_account_limit, settings.auth_login_account_window_s
        ),
        "login_address": Limit(
            "login_address", settings.auth_login_address_limit, settings.auth_login_address_window_s
        ),
        "register": Limit(
            "register_address",
            settings.auth_register_address_limit,
            settings.auth_register_address_window_s,
        ),
    }


def service_host(settings: AuthSettings) -> ServiceHost:
    """Auth on the host every service runs on: the bus, health, the ops endpoints (on
    their own port with ``APEX_AUTH_OPS_PORT``) and the heartbeat. Readiness is not gated
    on NATS: auth answers its HTTP API without the bus."""
    return ServiceHost(
        SERVICE, settings, settings.auth_port, ops_port=settings.auth_ops_port, bus_gates_readiness=False
    )


@asynccontextmanager
async def open_service(settings: AuthSettings, host: ServiceHost | None = None) -> AsyncIterator[AuthService]:
    """Connects to Postgres, Redis and NATS (failing with an error that names the one
    that does not answer), migrates when ``auth_auto_migrate``, makes sure a signing key
    exists, and wires the ports. Everything is closed on exit (the host stopped)."""
    host = host or service_host(settings)
    engine = make_engine(settings.postgres_dsn, pool_size=settings.postgres_pool_size)
    redis = Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    accounts: Accounts | None = None
    try:
        await check_reachable(engine, settings.postgres_dsn)
        await _check_redis(redis, settings.redis_url)
        bus = await host.connect()
        if settings.auth_auto_migrate:
            await migrate(settings.postgres_dsn)
        service = await _wire(settings, Database(engine), redis, bus, host.health)
        accounts = service.accounts
        yield service
    finally:
        if accounts is not None:
            await accounts.drain()
        await host.stop()
        await redis.aclose()
        await engine.dispose()


async def _wire(settings: AuthSettings, db: Database, redis: Redis, bus: Bus, health: Health) -> AuthService:
    passphrase = settings.auth_key_passphrase
    keys = KeyRing(
        db.engine,
        passphrase=passphrase.get_secret_value().encode() if passphrase else None,
        cache_s=settings.auth_key_cache_s,
        retire_after_s=settings.key_retire_after_s,
    )
    await keys.ensure()
    await keys.jwks()  # kept: the JWKS is served from it while Postgres is away
    tokens = AccessTokens(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_s=settings.jwt_access_ttl_s,
        leeway_s=settings.jwt_leeway_s,
        operators=frozenset(settings.operator_users),
    )
    revocations = Revocations(redis, bus, ttl_s=settings.revocation_ttl_s)
    sessions = Sessions(db, tokens, revocations, refresh_ttl_s=settings.jwt_refresh_ttl_s)
    passwords = PasswordHashing(
        Argon2Params(
            time_cost=settings.auth_argon2_time_cost,
            memory_kib=settings.auth_argon2_memory_kib,
            parallelism=settings.auth_argon2_parallelism,
        ),
        slots=settings.hash_slots,
        wait_s=settings.auth_hash_wait_s,
    )
    log.info("password hashing: %d Argon2 checks at once", passwords.slots)
    throttle, throttle_limits = Throttle(redis), limits(settings)
    accounts = Accounts(
        db,
        passwords,
        sessions,
        revocations,
        throttle,
        throttle_limits,
        invite_ttl_s=settings.auth_invite_ttl_s,
    )
    relay = AuditRelay(db.engine, bus, batch=settings.auth_audit_batch, poll_s=settings.auth_audit_poll_s)
    db.after_commit(relay.wake)
    # Ready means this process answers: a Postgres failover or a Redis blip is a typed
    # store_unavailable on the requests that need them (the JWKS comes from the keys
    # already loaded), not every auth pod leaving the load balancer at once.
    health.add_check("postgres", lambda: _within(is_reachable(db.engine)), gates=False)
    health.add_check("redis", lambda: _within(_redis_ok(redis)), gates=False)
    health.add_probe("hash_slots", lambda: passwords.slots)
    health.add_probe("hash_slots_in_use", lambda: passwords.in_use)
    return AuthService(
        settings,
        db,
        redis,
        bus,
        keys,
        sessions,
        accounts,
        relay,
        health,
        AccountClosure(db, revocations, throttle, throttle_limits),
        _service_accounts(settings, db),
        trusted_networks(settings.trusted_proxies),
    )


def _service_accounts(settings: AuthSettings, db: Database) -> ServiceAccounts:
    """Issuing needs the issuer file and the system account's credentials; without
    them (or with ``APEX_SERVICE_ACCOUNTS=false``) a create answers 503."""
    if settings.service_accounts is not False and not settings.issues_service_accounts:
        log.info("service accounts: off (APEX_NATS_ISSUER_FILE and APEX_NATS_SYSTEM_CREDS are not set)")
    issuer, creds = None, settings.nats_system_creds
    if settings.issues_service_accounts and settings.nats_issuer_file and creds:
        issuer = AccountIssuer.load(settings.nats_issuer_file)
    return ServiceAccounts(
        db,
        issuer,
        nats_url=settings.nats_url,
        public_url=settings.bus_url_for_clients,
        system_creds=creds,
        tls=settings.nats_tls(),
    )


def build_app(service: AuthService) -> FastAPI:
    app = FastAPI(
        title="Apex auth",
        version="1",
        description="Users, tenants, sessions, tokens and the JWKS. See docs/auth.md.",
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(service_accounts_router)
    app.include_router(jwks_router)
    if service.settings.auth_ops_port is None:
        app.router.routes.extend(ops_routes(service.health))
    app.middleware("http")(_no_store)
    return app


async def _no_store(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Token answers must never sit in a cache (RFC 6749 section 5.1)."""
    response = await call_next(request)
    if request.url.path.startswith("/auth/"):
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Pragma", "no-cache")
    return response


async def run_background(service: AuthService, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """Starts the audit relay and the heartbeat; both end when ``stop`` is set."""
    return [
        asyncio.create_task(service.relay.run(stop), name="auth-audit-relay"),
        asyncio.create_task(heartbeat_loop(service.bus, service.health, stop), name="auth-heartbeat"),
    ]


async def serve(settings: AuthSettings, stop: asyncio.Event) -> None:
    """Runs the service until ``stop`` is set, then drains and closes everything."""
    host = service_host(settings)
    async with open_service(settings, host) as service:
        await host.start(build_app(service))
        host.spawn(service.relay.run(host.stopping), "auth-audit-relay")
        host.spawn(service.service_accounts.keep_published(host.stopping), "auth-revocations")
        await stop.wait()


async def rotate_keys(settings: AuthSettings) -> str:
    """Activates a new signing key; returns its ``kid``."""
    engine = make_engine(settings.postgres_dsn, pool_size=1)
    try:
        await check_reachable(engine, settings.postgres_dsn)
        passphrase = settings.auth_key_passphrase
        keys = KeyRing(
            engine,
            passphrase=passphrase.get_secret_value().encode() if passphrase else None,
            cache_s=0.0,
            retire_after_s=settings.key_retire_after_s,
        )
        return await keys.rotate()
    finally:
        await engine.dispose()


def setup_logging(settings: AuthSettings) -> None:
    configure_logging(SERVICE, settings.log_level, settings.log_format)


async def _check_redis(redis: Redis, url: str) -> None:
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        raise Unavailable(
            f"Cannot reach Redis at {redacted(url)}: {exc}", code=ErrorCode.STORE_UNAVAILABLE
        ) from exc


async def _redis_ok(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False


async def _within(check: Awaitable[bool]) -> bool:
    try:
        return await asyncio.wait_for(check, _CHECK_TIMEOUT_S)
    except TimeoutError:
        return False
