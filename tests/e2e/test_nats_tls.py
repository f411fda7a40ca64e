"""``apex up --nats-tls`` (``APEX_NATS_TLS=1``): the embedded NATS takes TLS clients only,
with a development CA ``apex up`` makes; every service connects over TLS as its own user
and verifies the server with the CA (the platform turns ready, and a thread list is answered through the bus),
while a client without the CA is refused by its own certificate check."""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest

from apex_runtime import nats_servers
from tests.e2e.platform import Platform, platform_env

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tls_platform() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="apex-tls-"))
    home.chmod(0o755)
    running = Platform(home, {**platform_env(home), "APEX_NATS_TLS": "1"})
    running.start()
    yield running
    running.stop()


async def test_every_service_is_on_the_bus_over_tls(tls_platform: Platform) -> None:
    env = tls_platform.recorded_env()
    assert all(url.startswith("tls://") for url in nats_servers(env["APEX_NATS_URL"]))
    ca = Path(env["APEX_NATS_CA"])
    assert ca.is_file() and ca.parent == tls_platform.home / ".apex" / "nats-auth" / "tls"
    nc = await nats.connect(
        env["APEX_NATS_URL"],
        user_credentials=env["APEX_NATS_CREDS"],
        tls=ssl.create_default_context(cafile=str(ca)),
    )
    try:
        info = await nc.jetstream().account_info()
        assert info.streams >= 4, "the services made the streams over TLS"
    finally:
        await nc.close()
    user = tls_platform.register()  # auth's facts go out on the bus
    answer = tls_platform.api(user, "GET", "/api/v1/threads")  # the gateway asks persistence on the bus
    assert answer.status_code == 200, answer.text


async def test_a_client_without_the_ca_is_refused(tls_platform: Platform) -> None:
    env = tls_platform.recorded_env()
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    with pytest.raises((ssl.SSLCertVerificationError, nats.errors.Error, OSError)):
        nc = await nats.connect(
            env["APEX_NATS_URL"],
            user_credentials=env["APEX_NATS_CREDS"],
            allow_reconnect=False,
            connect_timeout=3,
            error_cb=on_error,
        )
        await nc.close()
    assert any(isinstance(e, ssl.SSLCertVerificationError) for e in errors), errors
