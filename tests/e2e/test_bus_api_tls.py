"""Service accounts on a bus that takes TLS clients only (``apex up --nats-tls``): the
account connects with the CA, its request is answered, and a revocation (auth pushing the
account JWT over TLS, verified with ``APEX_NATS_CA``) disconnects it within seconds."""

from __future__ import annotations

import asyncio
import gc
import ssl
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import orjson
import pytest

from tests.e2e.platform import Platform, platform_env
from tests.e2e.test_bus_api import create

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tls_platform() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="apex-sa-tls-"))
    home.chmod(0o755)
    running = Platform(home, {**platform_env(home), "APEX_NATS_TLS": "1"})
    running.start()
    yield running
    running.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # nats-py's refused socket
async def test_a_service_account_works_and_is_revoked_over_tls(tls_platform: Platform) -> None:
    env = tls_platform.recorded_env()
    tls = ssl.create_default_context(cafile=env["APEX_NATS_CA"])
    admin = tls_platform.register()
    account = create(tls_platform, admin, tls=tls)
    assert account.created["nats_url"].startswith("tls://")
    nc = await account.connect()
    try:
        request = {"client_msg_id": uuid.uuid4().hex, "text": "Where is my LLM spend going?"}
        reply = await nc.request(account.subject("message.send"), orjson.dumps(request), timeout=15)
        assert orjson.loads(reply.data)["type"] == "message.accepted"
        started = time.monotonic()
        response = await asyncio.to_thread(
            tls_platform.api, admin, "DELETE", f"/api/v1/service-accounts/{account.created['id']}"
        )
        assert response.status_code == 204, response.text
        await asyncio.wait_for(account.disconnected.wait(), 10)
        print(
            f"\nrevocation (DELETE sent) to disconnect over TLS: {(time.monotonic() - started) * 1000:.0f} ms"
        )
        with pytest.raises(nats.errors.Error):
            await account.connect()
        gc.collect()  # nats-py leaves the refused socket to the GC: collect it under this test's filter
    finally:
        await nc.close()
