"""CPU charged per run: every process's time over the batch, and the same less what it
spends idle; a process that exited is counted with its parent (Postgres's backends)."""

from __future__ import annotations

import subprocess
import sys

from bench.cpu import charge, tree_cpu_s

# A child that starts a grandchild burning 0.5 s of CPU, waits for it, then waits forever:
# the grandchild's time is only in the child's children_* times.
CHILD = """
import subprocess, sys, time
subprocess.run([sys.executable, "-c", "import time\\nwhile time.process_time() < 0.5: pass"], check=True)
print("done", flush=True)
time.sleep(600)
"""


def test_charge_per_run_raw_and_net_of_idle() -> None:
    figures = charge(
        before={"nats": 10.0, "persistence": 20.0},
        after={"nats": 12.0, "persistence": 21.0},
        idle={"nats": 0.1, "persistence": 0.0},
        wall_s=10.0,
        runs=100,
    )
    assert figures["per_process"]["nats"] == {
        "raw_ms_per_run": 20.0,
        "net_ms_per_run": 10.0,
        "idle_ms_per_s": 100.0,
    }
    assert figures["per_process"]["persistence"]["net_ms_per_run"] == 10.0
    assert figures["total_raw_ms_per_run"] == 30.0
    assert figures["total_net_ms_per_run"] == 20.0


def test_idle_time_is_never_charged_below_zero() -> None:
    figures = charge({"a": 1.0}, {"a": 1.0}, {"a": 5.0}, wall_s=2.0, runs=1)
    assert figures["per_process"]["a"]["net_ms_per_run"] == 0.0


def test_time_of_an_exited_grandchild_counts_for_its_ancestor() -> None:
    with subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "done"
            # /proc accounts CPU in clock ticks, split by sampling: it may read a tick or two
            # below what the grandchild's own clock (process_time) counted
            assert tree_cpu_s(child.pid) >= 0.4
        finally:
            child.kill()


def test_a_process_that_is_gone_costs_nothing() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait(30)
    assert tree_cpu_s(gone.pid) == 0.0
