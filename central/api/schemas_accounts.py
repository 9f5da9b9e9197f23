"""Request and response bodies of the accounts, sessions and audit API (``/api/v1``).

Enums and patterns are declared here so the OpenAPI schema states what the server enforces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from central.db.models import AuditRow, LoginSessionRow, Role
from central.users import USERNAME_PATTERN, UserInfo

WARD_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionInfoOut(_Out):
    """Who is logged in and the CSRF token every state-changing JSON request must send back."""

    username: str
    role: Role
    wards: list[str]
    must_change_password: bool
    csrf_token: str = Field(description="Send as the X-CSRF-Token header on POST/PUT/PATCH/DELETE.")


class AccountIn(_In):
    username: str = Field(pattern=USERNAME_PATTERN, description="2-64 characters: a-z, 0-9, '.', '_', '-'.")
    role: Role
    password: str = Field(
        min_length=1,
        max_length=256,
        description="Temporary password (zxcvbn score >= 3); changed at first login.",
    )
    wards: list[str] = Field(default_factory=list, max_length=200, description="Ward ids the user works in.")


class AccountPatch(_In):
    role: Role | None = None
    wards: list[str] | None = Field(default=None, max_length=200)
    disabled: bool | None = Field(
        default=None, description="true disables the account and ends its sessions."
    )


class PasswordResetIn(_In):
    password: str = Field(min_length=1, max_length=256, description="New temporary password.")


class PasswordChangeIn(_In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=256)


class AccountOut(_Out):
    username: str
    role: Role
    wards: list[str]
    disabled: bool
    must_change_password: bool
    created_at: datetime

    @classmethod
    def of(cls, info: UserInfo) -> AccountOut:
        return cls(
            username=info.username,
            role=Role(info.role),
            wards=list(info.wards),
            disabled=info.disabled,
            must_change_password=info.must_change_password,
            created_at=info.created_at,
        )


class LoginSessionOut(_Out):
    id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    address: str
    user_agent: str
    current: bool

    @classmethod
    def of(cls, row: LoginSessionRow, current_id: int | None) -> LoginSessionOut:
        return cls(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            address=row.address,
            user_agent=row.user_agent,
            current=row.id == current_id,
        )


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def of(cls, row: AuditRow) -> AuditOut:
        return cls(
            id=row.id,
            at=row.at,
            actor=row.username,
            action=row.action,
            target=row.target,
            details=row.detail,
            prev_hash=row.prev_hash,
            hash=row.hash,
        )


class AuditPageOut(_Out):
    rows: list[AuditOut]
    next_before_id: int | None = Field(
        description="Pass as before_id for the next (older) page; null at the end."
    )


class AuditVerifyOut(_Out):
    ok: bool
    rows: int
    first_broken_id: int | None
    reason: str | None


class ErrorOut(_Out):
    detail: str
