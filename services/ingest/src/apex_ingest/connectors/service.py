"""The connectors of every tenant: connecting (the key is tried on the provider first,
then sealed), disconnecting, syncing now, and the schedule every replica runs.

One sync per connector at a time, whatever the number of replicas: a sync holds the
lease ``connector.<tenant>.<provider>`` (``apex_runtime.leases``, renewed while it runs);
a replica that finds the lease held skips the connector (the schedule) or answers
``conflict`` (sync now). The state a sync leaves is the connector's visible last-sync
state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlparse

import httpx

from apex_contracts import ApexError, Conflict, InvalidInput, NotFound
from apex_ingest.connectors.model import (
    DEFAULT_BASE_URLS,
    ConnectIn,
    ConnectorConfig,
    ConnectorView,
    Provider,
    Window,
)
from apex_ingest.connectors.sealing import Sealer
from apex_ingest.connectors.store import ConnectorStore
from apex_ingest.connectors.sync import PROVIDERS, Sync, day_start
from apex_runtime.leases import Lease, Leases
from apex_runtime.tokens import Principal

log = logging.getLogger(__name__)
LEASE_TTL_S = 60.0


class Connectors:
    def __init__(
        self,
        store: ConnectorStore,
        sealer: Sealer,
        leases: Leases,
        sync: Sync,
        http: httpx.AsyncClient,
        *,
        allowed_hosts: list[str],
        poll_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.leases = leases
        self.sync = sync
        self.http = http
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.poll_s = poll_s
        self.clock = clock

    # --- the API -------------------------------------------------------------------

    async def list(self, tenant_id: str) -> list[ConnectorView]:
        return [await self.view(tenant_id, p) for p in sorted(await self.store.of_tenant(tenant_id))]

    async def view(self, tenant_id: str, provider: str) -> ConnectorView:
        config = await self.store.config(tenant_id, provider)
        if config is None:
            raise NotFound(f"No {provider} connector is set up.")
        return ConnectorView.of(config, await self.store.state(tenant_id, provider))

    async def connect(self, who: Principal, provider: Provider, body: ConnectIn) -> ConnectorView:
        """Tries the key on the provider (one small request), then stores it sealed; the
        first sync is due at once. Connecting again replaces the key and settings and
        keeps where the syncs got to."""
        base_url = self._allowed(body.base_url or DEFAULT_BASE_URLS[provider])
        key = body.admin_key.get_secret_value()
        now = self.clock()
        probe = Window(start=day_start(now) - timedelta(days=1), end=day_start(now))
        pages = PROVIDERS[provider].pages(self.http, base_url, key, probe)
        try:
            await anext(pages)
        finally:
            await pages.aclose()
        config = ConnectorConfig(
            tenant_id=who.tenant_id,
            provider=provider,
            base_url=base_url,
            sealed_key=self.sealer.seal(key, self._context(who.tenant_id, provider)),
            key_hint=f"…{key[-4:]}",
            every_s=body.every_s,
            backfill_days=body.backfill_days,
            created_by=who.user_id,
            created_at=now,
        )
        await self.store.save_config(config)
        state = await self.store.state(who.tenant_id, provider)
        await self.store.save_state(
            who.tenant_id, provider, state.model_copy(update={"next_sync_at": now, "error": None})
        )
        log.info("%s connected %s for %s", who.user_id, provider, who.tenant_id)
        return await self.view(who.tenant_id, provider)

    async def disconnect(self, tenant_id: str, provider: str) -> None:
        if await self.store.config(tenant_id, provider) is None:
            raise NotFound(f"No {provider} connector is set up.")
        await self.store.remove(tenant_id, provider)

    async def sync_now(self, tenant_id: str, provider: str) -> ConnectorView:
        """Runs a sync at once and answers the state it left; ``conflict`` when a sync
        of this connector is running (on any replica)."""
        config = await self.store.config(tenant_id, provider)
        if config is None:
            raise NotFound(f"No {provider} connector is set up.")
        try:
            async with self.leases.hold(self._lease(config), LEASE_TTL_S, wait_s=0) as lease:
                await self._sync(config, lease)
        except TimeoutError as exc:
            raise Conflict(
                f"A sync of the {provider} connector is running; its outcome shows in its state."
            ) from exc
        return await self.view(tenant_id, provider)

    # --- the schedule --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Every ``poll_s``: syncs each due connector whose lease is free."""
        while not stop.is_set():
            try:
                await self.sync_due()
            except ApexError as exc:
                log.warning("connector schedule: %s", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)

    async def sync_due(self) -> int:
        """Syncs the due connectors this replica could lease; returns how many."""
        synced = 0
        for tenant_id, provider in await self.store.all_keys():
            config = await self.store.config(tenant_id, provider)
            state = await self.store.state(tenant_id, provider)
            if config is None or (state.next_sync_at is not None and state.next_sync_at > self.clock()):
                continue
            try:
                async with self.leases.hold(self._lease(config), LEASE_TTL_S, wait_s=0) as lease:
                    await self._sync(config, lease)
                    synced += 1
            except TimeoutError:
                continue  # another replica is syncing it
        return synced

    async def _sync(self, config: ConnectorConfig, lease: Lease) -> None:
        # read under the lease: the state another replica's sync just left
        state = await self.store.state(config.tenant_id, config.provider)
        try:
            key = self.sealer.open(config.sealed_key, self._context(config.tenant_id, config.provider))
        except ApexError as exc:
            state = state.model_copy(
                update={"status": "error", "error": exc.info(), "last_attempt_at": self.clock()}
            )
        else:
            state = await self.sync.run(config, key, state, lease)
        if (
            await self.store.config(config.tenant_id, config.provider) is not None
        ):  # not disconnected meanwhile
            await self.store.save_state(config.tenant_id, config.provider, state)

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def _lease(config: ConnectorConfig) -> str:
        return f"connector.{config.tenant_id}.{config.provider}"

    @staticmethod
    def _context(tenant_id: str, provider: str) -> str:
        return f"{tenant_id}.{provider}"

    def _allowed(self, base_url: str) -> str:
        parsed = urlparse(base_url)
        host = (parsed.hostname or "").lower()
        if parsed.scheme not in ("https", "http") or not host:
            raise InvalidInput("The base URL must be an http(s) URL.")
        if host not in self.allowed_hosts:
            raise InvalidInput(
                f"The base URL's host {host} is not one this platform calls; an operator may allow it "
                "(APEX_CONNECTOR_ALLOWED_HOSTS).",
                details={"allowed_hosts": sorted(self.allowed_hosts)},
            )
        return base_url.rstrip("/")
