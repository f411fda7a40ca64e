"""Register, login, who-am-I, invites: the account side of the HTTP API."""

from __future__ import annotations

from sqlalchemy import select

from apex_auth.tables import audit_outbox
from apex_contracts import is_id
from tests.integration.auth.auth_support import PASSWORD, Auth, bearer, error_code, unique_email


async def test_register_creates_a_tenant_whose_admin_can_sign_in(auth: Auth) -> None:
    email = unique_email()
    response = await auth.http.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "tenant": "Acme"}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"access_token", "refresh_token", "token_type", "expires_in", "user_id", "tenant_id"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert is_id(body["user_id"], "usr") and is_id(body["tenant_id"], "ten")
    assert response.headers["cache-control"] == "no-store"

    me = await auth.get("/auth/me", body["access_token"])
    assert me.status_code == 200
    assert me.json() == {
        "user_id": body["user_id"],
        "tenant_id": body["tenant_id"],
        "email": email,
        "roles": ["admin"],
    }

    login = await auth.login(email.upper())
    assert login.status_code == 200
    again = await auth.get("/auth/me", login.json()["access_token"])
    assert again.json()["user_id"] == body["user_id"]


async def test_register_refuses_weak_passwords_bad_emails_and_ambiguous_bodies(auth: Auth) -> None:
    cases = [
        {"email": unique_email(), "password": "short", "tenant": "Acme"},
        {"email": "not-an-email", "password": PASSWORD, "tenant": "Acme"},
        {"email": unique_email(), "password": PASSWORD},
        {"email": unique_email(), "password": PASSWORD, "tenant": "Acme", "invite": "apxi_x"},
        {"email": unique_email(), "password": PASSWORD, "tenant": "   "},
    ]
    for body in cases:
        response = await auth.http.post("/auth/register", json=body)
        assert response.status_code == 422, body
        assert error_code(response) == "invalid_request"
        assert PASSWORD not in response.text


async def test_register_with_a_taken_email_is_a_conflict(auth: Auth) -> None:
    first = await auth.register()
    response = await auth.http.post(
        "/auth/register",
        json={"email": first["email"], "password": "another long password", "tenant": "Evil"},
    )
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "already_exists",
        "message": "An account with this email already exists.",
        "retryable": False,
    }
    assert (await auth.login(first["email"], "another long password")).status_code == 401

    await auth.service.accounts.drain()
    async with auth.service.db.engine.connect() as conn:
        entries = [
            row.entry
            for row in await conn.execute(
                select(audit_outbox).where(audit_outbox.c.tenant_id == first["tenant_id"])
            )
        ]
    # the failed login is audited too, and the outbox has no order: pick the register entry
    attempt = next(e for e in entries if e["outcome"] == "failure" and e["action"] == "auth.register")
    assert attempt["details"] == {"reason": "email_taken"}


async def test_an_invite_lets_one_person_join_the_tenant_once(auth: Auth) -> None:
    admin = await auth.register()
    invitee = unique_email()
    created = await auth.http.post(
        "/auth/invites",
        json={"email": invitee, "role": "member"},
        headers=bearer(admin["access_token"]),
    )
    assert created.status_code == 201
    invite = created.json()
    assert invite["invite_token"].startswith("apxi_") and invite["expires_at"]

    wrong_person = await auth.http.post(
        "/auth/register",
        json={"email": unique_email(), "password": PASSWORD, "invite": invite["invite_token"]},
    )
    assert wrong_person.status_code == 422

    joined = await auth.register(invitee, invite=invite["invite_token"])
    assert joined["tenant_id"] == admin["tenant_id"]
    me = (await auth.get("/auth/me", joined["access_token"])).json()
    assert me["roles"] == ["member"] and me["tenant_id"] == admin["tenant_id"]

    reused = await auth.http.post(
        "/auth/register",
        json={"email": unique_email(), "password": PASSWORD, "invite": invite["invite_token"]},
    )
    assert reused.status_code == 422

    by_member = await auth.http.post(
        "/auth/invites",
        json={"email": unique_email(), "role": "admin"},
        headers=bearer(joined["access_token"]),
    )
    assert by_member.status_code == 403 and error_code(by_member) == "forbidden"


async def test_unknown_routes_and_methods_answer_json_errors(auth: Auth) -> None:
    missing = await auth.http.get("/auth/nothing-here")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    wrong_method = await auth.http.get("/auth/login")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    broken = await auth.http.post(
        "/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and error_code(broken) == "invalid_request"
