from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.natsfilter import DroppingProxy, dropping
from tests.e2e.platform import Platform, platform_env


@pytest.fixture(scope="package")
def platform() -> Iterator[Platform]:
    """One running platform for the e2e tests that do not hurt it."""
    home = Path(tempfile.mkdtemp(prefix="apex-e2e-"))
    home.chmod(0o755)
    running = Platform(home, platform_env(home))
    running.ready_after_s = running.start()  # type: ignore[attr-defined]
    yield running
    running.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """An e2e test may pay for booting the platform (tens of seconds on a loaded machine)."""
    for item in items:
        if "tests/e2e/" in str(item.fspath) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(300))


@pytest.fixture(scope="package")
def hostile() -> Iterator[Platform]:
    """A platform for the hostile-client tests: frame rates high enough for thousands of
    generated frames, a small send queue, a short revocation re-check, three sockets per
    user (tests/e2e/hostile.py has its helpers)."""
    from tests.e2e.hostile import hostile_env

    home = Path(tempfile.mkdtemp(prefix="apex-hostile-"))
    home.chmod(0o755)
    running = Platform(home, hostile_env(home))
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="package")
def second_gateway(hostile: Platform) -> Iterator[tuple[str, DroppingProxy]]:
    """Another gateway of the hostile platform whose NATS connection drops every
    revocation broadcast: (its base URL, the proxy)."""
    from apex_cli.embedded import free_port
    from apex_contracts import subjects
    from tests.e2e.hostile import spawn_ready

    with dropping(hostile.recorded_env()["APEX_NATS_URL"], subjects.CTL_SESSION_REVOKED) as proxy:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = spawn_ready(
            hostile,
            "gateway",
            f"{url}/readyz",
            APEX_GATEWAY_PORT=str(port),
            APEX_NATS_URL=proxy.url,
            APEX_ALLOWED_ORIGINS=f'["{url}"]',
        )
        yield url, proxy
        proc.terminate()
        proc.wait(30)
