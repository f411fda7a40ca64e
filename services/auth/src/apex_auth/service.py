"""The assembled auth service: every port the HTTP layer and the background tasks use."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from apex_auth.accounts import Accounts
from apex_auth.audit import AuditRelay
from apex_auth.closure import AccountClosure
from apex_auth.db import Database
from apex_auth.keys import KeyRing
from apex_auth.serviceaccounts.store import ServiceAccounts
from apex_auth.sessions import Sessions
from apex_auth.settings import AuthSettings
from apex_runtime import Bus, Health
from apex_runtime.clientaddr import Network


@dataclass(frozen=True, slots=True)
class AuthService:
    settings: AuthSettings
    db: Database
    redis: Redis
    bus: Bus
    keys: KeyRing
    sessions: Sessions
    accounts: Accounts
    relay: AuditRelay
    health: Health
    closure: AccountClosure
    service_accounts: ServiceAccounts
    # the networks of the proxies in front of auth (APEX_TRUSTED_PROXIES), parsed once
    trusted: tuple[Network, ...] = ()
