"""``KvBucket`` (apex_runtime.port) over a nats-py JetStream key-value bucket."""

from __future__ import annotations

from typing import Any

import nats.js.errors

from apex_runtime.port import KvBucket, KvEntry, WrongRevision

# JetStream's "wrong last sequence" error codes (JSStreamWrongLastSequence*): a
# conditional write that lost, which nats-py reports as a BadRequestError for deletes
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})


class NatsKvBucket(KvBucket):
    def __init__(self, kv: Any, js: Any, name: str) -> None:
        self._kv = kv
        self._js = js
        self._name = name

    async def get(self, key: str) -> KvEntry | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:  # also KeyDeletedError: a tombstone
            return None
        if entry.value is None:
            return None
        return KvEntry(entry.key, bytes(entry.value), int(entry.revision or 0))

    async def put(self, key: str, value: bytes) -> int:
        return int(await self._kv.put(key, value))

    async def create(self, key: str, value: bytes) -> int:
        try:
            return int(await self._kv.create(key, value))
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise WrongRevision(key) from exc

    async def update(self, key: str, value: bytes, last: int) -> int:
        try:
            return int(await self._kv.update(key, value, last=last))
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise WrongRevision(key) from exc

    async def delete(self, key: str, last: int | None = None) -> None:
        try:
            await self._kv.delete(key, last=last)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise WrongRevision(key) from exc
        except nats.js.errors.BadRequestError as exc:
            # nats-py reports a conditional delete that lost as the stream's error
            if exc.err_code not in _WRONG_LAST_SEQUENCE:
                raise
            raise WrongRevision(key) from exc

    async def purge(self, key: str) -> None:
        await self._kv.purge(key)

    async def purge_matching(self, pattern: str) -> None:
        await self._js.purge_stream(f"KV_{self._name}", subject=f"$KV.{self._name}.{pattern}")

    async def keys(self) -> list[str]:
        try:
            return list(await self._kv.keys())
        except nats.js.errors.NoKeysError:
            return []

    async def entries(self, pattern: str = ">") -> list[KvEntry]:
        watcher = await self._kv.watch(pattern, ignore_deletes=True)
        found: list[KvEntry] = []
        try:
            async for entry in watcher:
                if entry is None:  # the end of what is stored now
                    break
                if entry.value:
                    found.append(KvEntry(entry.key, bytes(entry.value), int(entry.revision or 0)))
        finally:
            await watcher.stop()
        return found
