"""Messages that feed nodes from central or a controller: traffic-signal states (``signals/{feed}``) and
central's end-to-end acknowledgements (``acks``)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from edge_agent.contract.core import Identifier, _Strict

# -- external traffic-signal feed (controller or central -> nodes on ``signals/{feed}``) ------------------------

SCHEMA_SIGNAL: Final = "streetwatch.signal/1"


class SignalMessage(_Strict):
    """One state of one controller feed, on ``{prefix}/signals/{feed}`` (QoS 1, retained: a node that connects
    gets the latest at once).

    The node feeds it to every ``source: external`` signal of its config with that feed (``ExternalSignalFeed``),
    which answers UNKNOWN once the message is ``max_age_s`` old, so a controller that goes quiet turns the
    red-light rule off rather than leaving a stale red.
    """

    schema_: Literal["streetwatch.signal/1"] = Field(
        default=SCHEMA_SIGNAL, alias="schema", description="Contract version."
    )
    feed: Identifier = Field(description="Controller feed id (the topic's last level).")
    state: Literal["red", "amber", "green", "unknown"] = Field(description="Signal state at ``at``.")
    at: AwareDatetime = Field(description="When the controller switched to (or confirmed) this state (UTC).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> SignalMessage:
        return cls.model_validate_json(payload)


# -- end-to-end acknowledgements (central -> node on ``acks``) -------------------------------------------------

SCHEMA_ACKS: Final = "streetwatch.acks/1"
ACK_DIGEST_HEX: Final = 32
MAX_ACK_DIGESTS: Final = 5000


def message_digest(payload: bytes) -> str:
    """The id central acknowledges a message by: the first 128 bits of the SHA-256 of its exact bytes.

    Derived from the bytes, not from the event, so any message (even one central could not parse and
    dead-lettered) can be acknowledged, and the node needs no id scheme of its own.
    """
    return hashlib.sha256(payload).hexdigest()[:ACK_DIGEST_HEX]


class Acks(_Strict):
    """Central's end-to-end acknowledgement on ``{prefix}/nodes/{node}/acks`` (QoS 1), sent after the commit.

    Each digest names one message (``message_digest``) that central has committed: stored, found to be a
    duplicate or stale, or dead-lettered. The node forgets a spooled message only when its digest comes back
    here, whatever the broker said (docs/delivery.md).
    """

    schema_: Literal["streetwatch.acks/1"] = Field(
        default=SCHEMA_ACKS, alias="schema", description="Contract version."
    )
    node_id: Identifier = Field(description="Node whose messages these are.")
    digests: list[Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]] = Field(
        max_length=MAX_ACK_DIGESTS, description="message_digest of every committed message (a batch)."
    )
    at: AwareDatetime = Field(description="When central committed them (UTC).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Acks:
        return cls.model_validate_json(payload)
