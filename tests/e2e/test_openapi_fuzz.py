"""The HTTP APIs of the gateway and auth, fuzzed by schemathesis from the OpenAPI documents
they serve, with a valid token, on the running platform (issue 12): no 5xx, and every
answer conforms to the document (status, content type, headers, body schema). Each
operation gets a bounded number of generated requests.

Three operations are left out because they end the token every other request uses:
``DELETE /api/v1/users/me`` (erasure), ``DELETE /auth/me`` (account closure) and
``POST /auth/logout``; each has its own tests (tests/e2e/test_erasure.py,
tests/e2e/test_security.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, checks

from tests.e2e.platform import Platform, User

pytestmark = pytest.mark.timeout(300)
# make test's bound; APEX_FUZZ_EXAMPLES runs a longer campaign by hand
EXAMPLES_PER_OPERATION = int(os.environ.get("APEX_FUZZ_EXAMPLES", "20"))
TALLY = {"requests": 0}
SPARED = {("DELETE", "/api/v1/users/me"), ("DELETE", "/auth/me"), ("POST", "/auth/logout")}
# No 5xx, and the answer is what the document says: status, content type, headers, body.
# (Not "positive data acceptance": some rules are beyond a JSON schema, e.g. an opaque
# cursor, or "a tenant or an invite"; those answer a documented 422.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzzer(platform: Platform) -> Iterator[User]:
    user = platform.register()
    yield user
    print(f"\nschemathesis requests: {TALLY['requests']}")


def fuzz(schema: schemathesis.BaseSchema, user: User) -> None:
    """Every operation of ``schema``, each with its own generated requests; all the
    failures are reported together."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SPARED:
            continue

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Case) -> None:
            TALLY["requests"] += 1
            case.call_and_validate(
                headers={"Authorization": f"Bearer {user.access_token}"}, checks=CHECKS, timeout=60
            )

        try:
            check()
        except (AssertionError, BaseExceptionGroup) as exc:  # each operation's, all reported below
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def test_the_gateway_api_conforms_to_its_document(platform: Platform, fuzzer: User) -> None:
    fuzz(schemathesis.openapi.from_url(f"{platform.gateway}/api/v1/openapi.json"), fuzzer)


def test_the_auth_api_conforms_to_its_document(platform: Platform, fuzzer: User) -> None:
    fuzz(schemathesis.openapi.from_url(f"{platform.auth}/openapi.json"), fuzzer)
