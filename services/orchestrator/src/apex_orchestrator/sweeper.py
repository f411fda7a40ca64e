"""The sweeper: finds runs that stopped and ends them, so that no run is left without a
terminal event.

A run has stopped when it has no terminal event, none of its events is newer than
``stall_after_s``, and nobody will drive it any more: its ``run.start`` command is no
longer in the command stream. (A run that has a driver, or will get one, always has its
command there: the orchestrator acks ``run.start`` only at the run's end, and the poison
guard removes a command only after ending its run.) Such a run ends with ``run.failed
run_stalled``, or ``run.cancelled`` when its cancellation had been requested.

It reads the event log itself (batched direct gets from where it stopped; at start-up
from ``lookback_s`` ago), keeps the runs that have not ended in memory, and every
``every_s`` checks the quiet ones. Every replica may sweep: the shared terminal id makes
two sweepers ending one run record one ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats.errors
import orjson

from apex_contracts import TERMINAL, ApexError, ErrorCode, Scope, subjects
from apex_contracts.streams import APEX_CMD
from apex_orchestrator.endings import RunEndings
from apex_orchestrator.policy import error
from apex_runtime import TRANSIENT_NATS_ERRORS, Bus

log = logging.getLogger(__name__)
# What skips one sweep (the next one tries again); one name, because mypy cannot type an
# unpacking inside ``except (...)``.
_SWEEP_SKIPPED: tuple[type[BaseException], ...] = (ApexError, *TRANSIENT_NATS_ERRORS, nats.errors.Error)


@dataclass
class _OpenRun:
    scope: Scope
    last_at: datetime


class Sweeper:
    def __init__(
        self,
        bus: Bus,
        endings: RunEndings,
        *,
        stall_after_s: float = 120.0,
        every_s: float = 10.0,
        lookback_s: float = 86_400.0,
    ) -> None:
        self.bus = bus
        self.endings = endings
        self.stall_after_s = stall_after_s
        self.every_s = every_s
        self.lookback_s = lookback_s
        self._open: dict[str, _OpenRun] = {}
        self._cursor: int | None = None
        self.swept = 0

    @property
    def open_runs(self) -> int:
        return len(self._open)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except _SWEEP_SKIPPED as exc:
                log.warning("sweep skipped, will try again: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def sweep_once(self) -> list[str]:
        """Reads the new events, then ends the runs that stopped; returns their ids."""
        await self._read_new_events()
        now = datetime.now(UTC)
        quiet = [
            run_id
            for run_id, run in self._open.items()
            if now - run.last_at > timedelta(seconds=self.stall_after_s)
        ]
        if not quiet:
            return []
        driven = await self._runs_with_a_command()
        ended: list[str] = []
        for run_id in quiet:
            if run_id in driven:
                continue
            outcome = await self.endings.fail_unless_ended(
                self._open[run_id].scope,
                run_id,
                error(
                    ErrorCode.RUN_STALLED,
                    f"The run stopped making progress for more than {self.stall_after_s:g} s.",
                ),
            )
            self._open.pop(run_id, None)
            if outcome is not None:
                log.warning("swept stalled run %s: %s", run_id, outcome)
                self.swept += 1
                ended.append(run_id)
        return ended

    async def _read_new_events(self) -> None:
        if self._cursor is None:
            self._cursor = await self._seq_before(datetime.now(UTC) - timedelta(seconds=self.lookback_s))
        async for seq, data in self.bus.read_subject(subjects.EVT_ALL, after_seq=self._cursor):
            self._cursor = seq
            self._note(orjson.loads(data))

    def _note(self, event: dict[str, object]) -> None:
        run_id, kind = event.get("run_id"), event.get("type")
        if not isinstance(run_id, str) or not event.get("thread_id"):
            return
        if kind in TERMINAL:
            self._open.pop(run_id, None)
            return
        try:
            at = datetime.fromisoformat(str(event.get("occurred_at")))
            scope = Scope(
                tenant_id=event["tenant_id"],
                user_id=event["user_id"],
                thread_id=event["thread_id"],
                run_id=run_id,
            )
        except (ValueError, KeyError):
            return
        known = self._open.get(run_id)
        if known is None or at > known.last_at:
            self._open[run_id] = _OpenRun(scope, at)

    async def _runs_with_a_command(self) -> set[str]:
        """Runs whose ``run.start`` is still in the command stream (pending or being
        driven): they have, or will get, a driver."""
        runs: set[str] = set()
        async for _seq, data in self.bus.read_subject(subjects.CMD_RUN_START, stream=APEX_CMD.name):
            run_id = orjson.loads(data).get("run_id")
            if isinstance(run_id, str):
                runs.add(run_id)
        return runs

    async def _seq_before(self, moment: datetime) -> int:
        """The last stream sequence stored before ``moment`` (0 when none)."""
        return await self.bus.seq_before(moment, subjects.EVT_ALL)
