"""A service process runs with the collector set for it (``apex_runtime.gctune``): the
thresholds raised from the first moment, and, once ready, what it built frozen out of
the collector's sight. A process that is not a service (this test run) keeps Python's
defaults."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

from apex_runtime import gctune


def _run(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_run_process_tunes_the_collector_and_settle_then_freezes() -> None:
    _run(
        """
        import asyncio, gc
        from apex_runtime import gctune, run_process

        async def main(stop: asyncio.Event) -> None:
            assert gc.get_threshold() == (gctune.YOUNG, gctune.MIDDLE, gctune.OLD)
            assert gc.get_freeze_count() == 0
            built = [[i] for i in range(1000)]  # a composition root's objects
            gctune.settle()
            assert gc.get_freeze_count() >= len(built)

        run_process(main)
        """
    )


def test_settle_does_nothing_in_a_process_that_is_not_a_service() -> None:
    before = gc.get_threshold()
    gctune.settle()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
