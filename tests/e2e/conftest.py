from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
