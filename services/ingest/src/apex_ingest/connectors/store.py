"""Connectors in the JetStream key-value bucket ``apex_connectors``: the configuration
under ``<tenant>.<provider>``, the sync state under ``<tenant>.<provider>.state``."""

from __future__ import annotations

import nats.errors

from apex_contracts import ErrorCode, Unavailable
from apex_ingest.connectors.model import ConnectorConfig, ConnectorState
from apex_runtime import KvBucket

_KV_FAILURES: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)
STATE = ".state"


class ConnectorStore:
    def __init__(self, kv: KvBucket) -> None:
        self._kv = kv

    @staticmethod
    def key(tenant_id: str, provider: str) -> str:
        return f"{tenant_id}.{provider}"

    async def _get(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except _KV_FAILURES as exc:
            raise Unavailable(f"connectors: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE) from exc
        return entry.value or None if entry is not None else None

    async def _put(self, key: str, value: bytes) -> None:
        try:
            await self._kv.put(key, value)
        except _KV_FAILURES as exc:
            raise Unavailable(f"connectors: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE) from exc

    async def config(self, tenant_id: str, provider: str) -> ConnectorConfig | None:
        raw = await self._get(self.key(tenant_id, provider))
        return None if raw is None else ConnectorConfig.model_validate_json(raw)

    async def state(self, tenant_id: str, provider: str) -> ConnectorState:
        raw = await self._get(self.key(tenant_id, provider) + STATE)
        return ConnectorState() if raw is None else ConnectorState.model_validate_json(raw)

    async def save_config(self, config: ConnectorConfig) -> None:
        await self._put(self.key(config.tenant_id, config.provider), config.model_dump_json().encode())

    async def save_state(self, tenant_id: str, provider: str, state: ConnectorState) -> None:
        await self._put(self.key(tenant_id, provider) + STATE, state.model_dump_json().encode())

    async def remove(self, tenant_id: str, provider: str) -> None:
        try:
            await self._kv.purge(self.key(tenant_id, provider))
            await self._kv.purge(self.key(tenant_id, provider) + STATE)
        except _KV_FAILURES as exc:
            raise Unavailable(f"connectors: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE) from exc

    async def all_keys(self) -> list[tuple[str, str]]:
        """(tenant, provider) of every connector."""
        try:
            keys = await self._kv.keys()
        except _KV_FAILURES as exc:
            raise Unavailable(f"connectors: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE) from exc
        out = []
        for key in keys:
            if not key.endswith(STATE):
                tenant, _, provider = key.partition(".")
                out.append((tenant, provider))
        return out

    async def of_tenant(self, tenant_id: str) -> list[str]:
        return [provider for tenant, provider in await self.all_keys() if tenant == tenant_id]
