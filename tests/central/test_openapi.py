"""The OpenAPI schema is a contract: security schemes, CSRF on writes, enums/patterns, and every status code a
route really answers is declared. Codes are produced by real requests, not read from the code."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.db.models import Role, WardRow
from central.db.session import Database
from tests.central.conftest import login
from tests.central.factories import T0

UNSAFE = {"post", "put", "patch", "delete"}


def schema_of(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def declared(schema: dict[str, Any], method: str, path: str) -> set[str]:
    return set(schema["paths"][path][method]["responses"])


def test_security_schemes_and_csrf_on_every_write(client: TestClient) -> None:
    schema = schema_of(client)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "streetwatch_sid",
        "description": "Login session (POST /api/v1/login).",
    }
    assert (schemes["csrfToken"]["in"], schemes["csrfToken"]["name"]) == ("header", "X-CSRF-Token")
    cookie_ops = 0
    for path, item in schema["paths"].items():
        for method, op in item.items():
            requirements = op.get("security", [])
            if not any("sessionCookie" in r for r in requirements):
                continue
            cookie_ops += 1
            assert "401" in op["responses"], (method, path)
            if method in UNSAFE:
                assert requirements == [{"sessionCookie": [], "csrfToken": []}], (method, path)
                assert "403" in op["responses"], (method, path)
    assert cookie_ops >= 10


def test_enums_and_patterns_are_declared(client: TestClient) -> None:
    components = schema_of(client)["components"]["schemas"]
    assert components["Role"]["enum"] == [role.value for role in Role]
    account_in = components["AccountIn"]["properties"]
    assert account_in["role"] == {"$ref": "#/components/schemas/Role"}
    assert account_in["username"]["pattern"] == "^[a-z0-9][a-z0-9._-]{1,63}$"
    assert components["AuditOut"]["properties"]["hash"]["pattern"] == "^[0-9a-f]{64}$"
    assert components["AccountIn"]["additionalProperties"] is False


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_declares_what_it_answers_without_a_login(client: TestClient) -> None:
    """Anonymous calls to every operation: whatever comes back must be in the schema."""
    schema = schema_of(client)
    undeclared = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            kwargs: dict[str, Any] = {"json": {}} if "requestBody" in op else {}
            response = client.request(method.upper(), _fill(path), **kwargs)
            if str(response.status_code) not in op["responses"]:
                undeclared.append(f"{method.upper()} {path} -> {response.status_code}")
    assert undeclared == []


@pytest.fixture
def ward(db: Database) -> str:
    with db.session() as session:
        session.add(WardRow(ward_id="p-ben-nghe", name="Phường Bến Nghé", created_at=T0))
    return "p-ben-nghe"


def test_account_routes_answer_only_declared_codes(client: TestClient, ward: str) -> None:
    schema = schema_of(client)
    seen: list[tuple[str, str, int]] = []

    def call(method: str, template: str, path: str, **kwargs: Any) -> int:
        code = client.request(method, path, **kwargs).status_code
        seen.append((method.lower(), template, code))
        return code

    body = {"username": "lan", "role": "officer", "password": "green-mango-bicycle-41", "wards": [ward]}
    assert (
        call("POST", "/api/v1/login", "/api/v1/login", json={"username": "admin", "password": "wrong-x"})
        == 401
    )
    assert call("POST", "/api/v1/login", "/api/v1/login", json={"username": ""}) == 422
    login(client)
    assert call("POST", "/api/v1/users", "/api/v1/users", json=body) == 201
    assert call("POST", "/api/v1/users", "/api/v1/users", json=body) == 409
    assert (
        call(
            "POST",
            "/api/v1/users",
            "/api/v1/users",
            json={**body, "username": "x2", "password": "aaaaaaaaaaaa"},
        )
        == 422
    )
    assert call("POST", "/api/v1/users", "/api/v1/users", json=body, headers={"X-CSRF-Token": "no"}) == 403
    assert call("PATCH", "/api/v1/users/{username}", "/api/v1/users/ghost", json={"disabled": True}) == 404
    assert call("PATCH", "/api/v1/users/{username}", "/api/v1/users/lan", json={"wards": ["nowhere"]}) == 422
    assert call("PATCH", "/api/v1/users/{username}", "/api/v1/users/lan", json={"role": "supervisor"}) == 200
    assert (
        call(
            "POST",
            "/api/v1/users/{username}/password",
            "/api/v1/users/ghost/password",
            json={"password": "windy-copper-garden-12"},
        )
        == 404
    )
    assert (
        call(
            "POST",
            "/api/v1/users/{username}/password",
            "/api/v1/users/lan/password",
            json={"password": "short"},
        )
        == 422
    )
    assert call("GET", "/api/v1/audit", "/api/v1/audit?from=2026-13-01") == 422
    assert call("GET", "/api/v1/audit", "/api/v1/audit?action=login.") == 200
    assert call("GET", "/api/v1/audit/verify", "/api/v1/audit/verify") == 200
    assert call("DELETE", "/api/v1/account/sessions/{session_id}", "/api/v1/account/sessions/999999") == 404
    assert (
        call(
            "POST",
            "/api/v1/account/password",
            "/api/v1/account/password",
            json={"current_password": "no", "new_password": "x"},
        )
        == 422
    )
    assert call("GET", "/api/v1/users", "/api/v1/users") == 200
    for i in range(10):
        client.post("/api/v1/login", json={"username": "lan", "password": f"g{i}"})
    assert call("POST", "/api/v1/login", "/api/v1/login", json={"username": "lan", "password": "g"}) == 429
    assert call("POST", "/api/v1/logout", "/api/v1/logout") == 204
    missing = [f"{m.upper()} {p} -> {c}" for m, p, c in seen if str(c) not in declared(schema, m, p)]
    assert missing == []


@pytest.mark.parametrize("role", ["officer", "supervisor", "operator", "technician", "admin"])
def test_every_route_declares_what_it_answers_to_each_role(
    client: TestClient, db: Database, role: str
) -> None:
    """Logged in with a role and no ward, junk ids and empty bodies: 403/404/409/422... must be declared."""
    from central import users

    with db.session() as session:
        users.create_user(
            session,
            username="lan",
            role=role,
            password="green-mango-bicycle-41",
            wards=[],
            actor=None,
            now=T0,
            must_change_password=False,
        )
    login(client, "lan", "green-mango-bicycle-41")
    schema = schema_of(client)
    undeclared = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if path in {"/api/v1/logout"}:
                continue  # would end the session the loop uses
            kwargs: dict[str, Any] = {"json": {}} if "requestBody" in op else {}
            response = client.request(method.upper(), _fill(path), **kwargs)
            if str(response.status_code) not in op["responses"]:
                undeclared.append(f"{method.upper()} {path} -> {response.status_code}")
    assert undeclared == []


def test_every_json_write_refuses_a_missing_csrf_token(client: TestClient) -> None:
    """Logged in (cookie) but without X-CSRF-Token, every cookie-authenticated write is refused with 403."""
    login(client)
    client.headers.pop("X-CSRF-Token")
    schema = schema_of(client)
    answered = {}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if method in UNSAFE and any("sessionCookie" in r for r in op.get("security", [])):
                response = client.request(method.upper(), _fill(path), json={})
                answered[f"{method.upper()} {path}"] = (response.status_code, "X-CSRF-Token" in response.text)
    assert len(answered) >= 8
    assert {key: value for key, value in answered.items() if value != (403, True)} == {}
