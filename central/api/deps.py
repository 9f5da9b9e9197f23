"""FastAPI dependencies (``Annotated`` aliases): the shared context, the fleet, a database session, the user.

Pages and the JSON API share one session-cookie login but fail differently: an API call without a login gets
``401`` JSON, a page request is redirected to ``/login`` (``LoginRequiredError`` is turned into that
redirect by an exception handler in ``central.app``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, cast
from urllib.parse import quote

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.orm import Session

from central.context import Central
from central.db.models import UserRow
from central.fleet.enrollment import node_of_token
from central.fleet.service import Fleet
from central.security import bearer_token, token_matches

SESSION_USER_KEY = "user"


@dataclass(frozen=True)
class AuthUser:
    """The logged-in user, as re-read from the database on every request (a deleted user is logged out)."""

    username: str
    role: str


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
    username = request.session.get(SESSION_USER_KEY)
    if not isinstance(username, str):
        return None
    user = db.get(UserRow, username)
    if user is None:
        request.session.clear()
        return None
    return AuthUser(user.username, user.role)


def optional_user(request: Request, db: DbSession) -> AuthUser | None:
    return _session_user(request, db)


def api_user(request: Request, db: DbSession) -> AuthUser:
    user = _session_user(request, db)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login required")
    return user


def page_user(request: Request, db: DbSession) -> AuthUser:
    user = _session_user(request, db)
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(path)
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


def login_session(request: Request, user: UserRow) -> None:
    """Start a fresh session for ``user`` (clearing the old one, against session fixation)."""
    lang = request.session.get("lang")
    request.session.clear()
    request.session[SESSION_USER_KEY] = user.username
    if isinstance(lang, str):
        request.session["lang"] = lang
