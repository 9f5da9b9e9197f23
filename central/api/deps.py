"""FastAPI dependencies (``Annotated`` aliases): the shared context, the fleet, a database session, the user.

Pages and the JSON API share one login: the ``streetwatch_sid`` cookie holds a random token that
``central.sessions`` looks up server-side on every request (so logout, a password change or disabling the
account ends it at once). They fail differently: an API call without a login gets ``401`` JSON, a page
request is redirected to ``/login`` (``LoginRequiredError`` is turned into that redirect by an exception
handler in ``central.app``). Every JSON request that changes state (POST/PUT/PATCH/DELETE) must also carry
the session's CSRF token in the ``X-CSRF-Token`` header; ``api_user`` enforces it, so no JSON route can forget.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, cast
from urllib.parse import quote

from fastapi import Depends, Header, HTTPException, Request, Response, status
from fastapi.security import APIKeyCookie
from sqlalchemy.orm import Session

from central import sessions
from central.context import Central
from central.db.models import UserRow
from central.fleet.enrollment import node_of_token
from central.fleet.service import Fleet
from central.security import bearer_token, csrf_token, csrf_valid, token_matches
from central.users import user_wards

SID_COOKIE = "streetwatch_sid"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths a user whose password was reset may still use (to change it, or leave).
PASSWORD_CHANGE_PATHS = frozenset(
    {"/account/password", "/logout", "/api/v1/account/password", "/api/v1/logout"}
)

# Declared so the OpenAPI schema names how the API authenticates (see central/api/openapi.py).
session_cookie_scheme = APIKeyCookie(
    name=SID_COOKIE,
    scheme_name="sessionCookie",
    auto_error=False,
    description="Login session (POST /api/v1/login).",
)


@dataclass(frozen=True)
class AuthUser:
    """The logged-in user, as re-read from the database on every request (a disabled user is logged out)."""

    username: str
    role: str
    session_id: int | None = None
    wards: frozenset[str] = field(default_factory=frozenset)
    must_change_password: bool = False


class PasswordChangeRequiredError(Exception):
    """A page needs the user to replace a temporary password first; handled by redirecting there."""

    location = "/account/password"


class LoginRequiredError(Exception):
    """A page needs a login; handled by redirecting to ``/login?next=<path>``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"/login?next={quote(self.next_path, safe='/')}"


def get_central(request: Request) -> Central:
    return cast(Central, request.app.state.central)


CentralDep = Annotated[Central, Depends(get_central)]


def get_fleet(request: Request) -> Fleet:
    return cast(Fleet, request.app.state.fleet)


FleetDep = Annotated[Fleet, Depends(get_fleet)]


def get_db(central: CentralDep) -> Iterator[Session]:
    """A session per request; handlers commit explicitly, anything left uncommitted is rolled back."""
    with central.db.sessionmaker() as session:
        yield session


DbSession = Annotated[Session, Depends(get_db)]


def _session_user(request: Request, db: Session) -> AuthUser | None:
    cached = getattr(request.state, "auth_user", None)
    if isinstance(cached, AuthUser):
        return cached
    central = get_central(request)
    found = sessions.resolve(
        db, request.cookies.get(SID_COOKIE), now=central.clock(), idle_s=central.settings.session_idle_s
    )
    if found is None:
        return None
    row, user = found
    auth = AuthUser(
        user.username,
        user.role,
        session_id=row.id,
        wards=frozenset(user_wards(db, user.username)),
        must_change_password=user.must_change_password,
    )
    request.state.auth_user = auth
    return auth


def optional_user(request: Request, db: DbSession) -> AuthUser | None:
    return _session_user(request, db)


def api_user(
    request: Request,
    db: DbSession,
    _cookie: Annotated[str | None, Depends(session_cookie_scheme)] = None,
) -> AuthUser:
    user = _session_user(request, db)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login required")
    if request.method in UNSAFE_METHODS and not csrf_valid(request.session, request.headers.get(CSRF_HEADER)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"missing or wrong {CSRF_HEADER} header (get the token from GET /api/v1/session)",
        )
    if user.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "password change required (POST /api/v1/account/password)"
        )
    return user


def page_user(request: Request, db: DbSession) -> AuthUser:
    user = _session_user(request, db)
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(path)
    if user.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise PasswordChangeRequiredError()
    return user


OptionalUser = Annotated[AuthUser | None, Depends(optional_user)]
ApiUser = Annotated[AuthUser, Depends(api_user)]
PageUser = Annotated[AuthUser, Depends(page_user)]


@dataclass(frozen=True)
class NodePrincipal:
    """A node authenticated by its bearer token: ``node_id`` from a per-node token, None for the shared one."""

    node_id: str | None


def node_principal(
    central: CentralDep, authorization: Annotated[str | None, Header()] = None
) -> NodePrincipal:
    """Accept the shared ``STREETWATCH_NODE_TOKEN`` (demo, nodes not yet enrolled) or an enrolled node's token.

    The lookup uses its own short session rather than ``DbSession``: an upload streams for a while, and a
    request-long session would hold a database connection (and a read transaction) for all of it.
    """
    token = bearer_token(authorization)
    if token is not None:
        if token_matches(token, central.settings.node_token.get_secret_value()):
            return NodePrincipal(None)
        with central.db.sessionmaker() as session:
            node_id = node_of_token(session, token)
        if node_id is not None:
            return NodePrincipal(node_id)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, "missing or wrong node token", headers={"WWW-Authenticate": "Bearer"}
    )


NodeAuth = Annotated[NodePrincipal, Depends(node_principal)]


def client_address(request: Request) -> str:
    """The peer address (behind a reverse proxy, run uvicorn with --proxy-headers to get the client's)."""
    return request.client.host if request.client is not None else "unknown"


def login_session(request: Request, response: Response, db: Session, user: UserRow) -> sessions.NewSession:
    """Start a fresh server-side session for ``user`` and set its cookie on ``response``.

    The signed UI cookie (language, flash, CSRF token) is cleared too, so the CSRF token changes at login
    (against session fixation); the caller commits.
    """
    central = get_central(request)
    lang = request.session.get("lang")
    request.session.clear()
    if isinstance(lang, str):
        request.session["lang"] = lang
    csrf_token(request.session)
    new = sessions.start(
        db,
        user,
        now=central.clock(),
        max_age_s=central.settings.session_max_age_s,
        address=client_address(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    set_session_cookie(request, response, new.token)
    return new


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    settings = get_central(request).settings
    response.set_cookie(
        SID_COOKIE,
        token,
        max_age=settings.session_max_age_s,
        httponly=True,
        secure=settings.session_cookie_secure,
        samesite="lax",
        path="/",
    )


def end_current_session(request: Request, response: Response, db: Session, user: AuthUser | None) -> None:
    """Logout: end this session server-side (audited) and drop the cookies; the caller commits."""
    central = get_central(request)
    token = request.cookies.get(SID_COOKIE)
    if token:
        row = db.scalars(sessions.select_by_token(token)).first()
        if row is not None:
            sessions.end(db, row, now=central.clock(), reason=sessions.EndReason.LOGOUT, actor=row.username)
    lang = request.session.get("lang")
    request.session.clear()
    if isinstance(lang, str):
        request.session["lang"] = lang
    request.state.auth_user = None
    response.delete_cookie(SID_COOKIE, path="/")
