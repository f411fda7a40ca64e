"""The auth service's answers to store faults: an outage is a typed, retryable 503."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from apex_auth.errors import install_error_handlers


@pytest.mark.parametrize(
    "fault",
    [
        PoolTimeout("QueuePool limit of size 5 overflow 5 reached, connection timed out"),
        OperationalError("SELECT 1", {}, ConnectionRefusedError()),
    ],
    ids=["pool_exhausted", "postgres_down"],
)
def test_a_store_fault_is_a_retryable_503(fault: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/fault")
    async def raise_fault() -> None:
        raise fault

    answer = TestClient(app, raise_server_exceptions=False).get("/fault")

    assert answer.status_code == 503
    body = answer.json()
    assert body["error"]["code"] == "store_unavailable"
    assert body["error"]["retryable"] is True
