"""Relay of traffic-signal states to the nodes: ``POST /api/v1/signals/{feed}``.

A signal controller that speaks HTTP (most do; few speak MQTT) posts each state change here with its bearer
token (``STREETWATCH_SIGNAL_TOKEN``); an admin or operator may post too (commissioning, tests), which is
audited. Central publishes a ``SignalMessage`` on ``<prefix>/signals/<feed>``, retained at QoS 1, and the nodes
whose config names that feed feed it to their red-light rules (``edge_agent.node.signal_feed``). The message
keeps the controller's own time: a state that reaches a node later than its ``max_age_s`` reads UNKNOWN there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from central import audit
from central.api.deps import CentralDep, DbSession, FleetDep, optional_user
from central.db.models import Role
from central.security import bearer_token, token_matches
from edge_agent.contract import Identifier, SignalMessage

router = APIRouter(tags=["signals"])

SIGNAL_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value})
PUBLISH_TIMEOUT_S = 5.0


class SignalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["red", "amber", "green", "unknown"] = Field(description="The signal's state.")
    at: AwareDatetime | None = Field(
        default=None, description="When the controller switched (UTC); unset: when central received it."
    )


class SignalOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    message: SignalMessage


@router.post("/api/v1/signals/{feed}", response_model=SignalOut)
def api_post_signal(
    feed: Identifier,
    body: SignalIn,
    request: Request,
    db: DbSession,
    central: CentralDep,
    fleet: FleetDep,
    authorization: Annotated[str | None, Header()] = None,
) -> SignalOut:
    """Publish one controller state to the nodes (retained); 503 when central has no broker connection."""
    token = central.settings.signal_token
    by_controller = token is not None and token_matches(bearer_token(authorization), token.get_secret_value())
    user = None if by_controller else optional_user(request, db)
    if not by_controller and user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login or the controller's signal token required")
    if user is not None and user.role not in SIGNAL_ROLES:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"needs one of the roles {', '.join(sorted(SIGNAL_ROLES))}"
        )
    now: datetime = central.clock()
    message = SignalMessage(feed=feed, state=body.state, at=body.at or now)
    topic = central.topics.signal(feed)
    link = fleet.link
    if link is None or not link.publish(
        topic, message.to_json(), qos=1, retain=True, timeout_s=PUBLISH_TIMEOUT_S
    ):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no broker connection; the state was not relayed"
        )
    if user is not None:  # controllers post every change (seconds apart): only people's posts are audited
        audit.record(
            db,
            at=now,
            actor=user.username,
            action="signal.publish",
            target=f"signal:{feed}",
            details={"state": body.state, "at": message.at.isoformat()},
        )
        db.commit()
    return SignalOut(topic=topic, message=message)
