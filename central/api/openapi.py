"""The OpenAPI schema states how the API is secured and what every route can answer.

FastAPI derives most of the schema from the routes; this adds what it cannot know:

* security: operations that take the session cookie also list, for POST/PUT/PATCH/DELETE, the CSRF header
  (``api_user`` enforces it for every unsafe method, so the schema says so for every unsafe operation);
  node routes use bearer tokens;
* the generic answers of the dependencies: ``401`` (no/ended session), ``403`` (CSRF, temporary password,
  role), ``404`` (an id that does not exist or is outside the caller's wards), ``422`` (validation),
  declared on each operation that can produce them.

``tests/central/test_openapi.py`` drives real requests into each status and checks the schema declares it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from central.api.deps import CSRF_HEADER

UNSAFE = ("post", "put", "patch", "delete")
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "title": "Error",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def _uses(operation: dict[str, Any], scheme: str) -> bool:
    return any(scheme in requirement for requirement in operation.get("security", []))


def customize(schema: dict[str, Any]) -> dict[str, Any]:
    """Add CSRF to unsafe cookie-authenticated operations and the dependencies' error answers."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes.setdefault(
        "nodeToken",
        {"type": "http", "scheme": "bearer", "description": "A node's enrolled token (or the shared one)."},
    )
    schemes.setdefault(
        "csrfToken",
        {
            "type": "apiKey",
            "in": "header",
            "name": CSRF_HEADER,
            "description": "The session's CSRF token (GET /api/v1/session); required on POST/PUT/PATCH/DELETE.",
        },
    )
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if _uses(operation, "sessionCookie"):
                if method in UNSAFE:
                    operation["security"] = [{"sessionCookie": [], "csrfToken": []}]
                else:
                    operation["security"] = [{"sessionCookie": []}]
                responses.setdefault("401", _error("Not logged in, or the session ended."))
                responses.setdefault(
                    "403",
                    _error(
                        "Refused: the role may not do this, a password change is due, or (writes) no CSRF token."
                    ),
                )
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                responses.setdefault("404", _error("No such resource, or not in the caller's wards."))
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("422", _error("The request does not match the schema."))
    return schema


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that builds the schema once, then customises it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=(
                    "streetwatch central. Log in with POST /api/v1/login (sets the streetwatch_sid cookie and "
                    "returns csrf_token); send X-CSRF-Token on every POST/PUT/PATCH/DELETE."
                ),
                routes=app.routes,
            )
            app.openapi_schema = customize(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
