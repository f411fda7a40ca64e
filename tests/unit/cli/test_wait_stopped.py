"""``wait_stopped`` returns only once a SIGSTOP has stopped every thread of a process,
and says so when one never stops."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from apex_cli.embedded import EmbeddedError, send_signal, wait_stopped

THREADS = "import threading, time\nfor _ in range(4): threading.Thread(target=time.sleep, args=(60,)).start()\ntime.sleep(60)"


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", THREADS])
    yield proc
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait(10)


def _states(pid: int) -> set[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return {stat.read().rsplit(")", 1)[1].split()[0]}


def test_returns_once_the_process_is_stopped(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGSTOP)
    wait_stopped(child.pid)
    assert _states(child.pid) <= {"T", "t"}


def test_send_signal_returns_once_a_sigstop_took_effect(child: subprocess.Popen[bytes]) -> None:
    send_signal(child.pid, signal.SIGSTOP)
    assert _states(child.pid) <= {"T", "t"}


def test_a_running_process_is_reported(child: subprocess.Popen[bytes]) -> None:
    with pytest.raises(EmbeddedError, match="did not stop"):
        wait_stopped(child.pid, timeout=0.2)


def test_a_process_that_is_gone_is_not_waited_for(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait(10)
    wait_stopped(child.pid, timeout=0.2)
