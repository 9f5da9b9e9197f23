"""Commands to nodes (central -> node on ``cmd``, answers on ``cmd/result``): the envelope and each command's
argument and result models, registered by name so a new command is two models and two lines."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edge_agent.contract.core import Identifier, ModelRef, Sha256Hex, Unit, _Strict

SCHEMA_COMMAND: Final = "streetwatch.command/1"
SCHEMA_COMMAND_RESULT: Final = "streetwatch.command-result/1"
CommandName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Command name, e.g. 'snapshot'.")
]


class Command(_Strict):
    """One request to one node, published at QoS 1 (not retained) on ``{prefix}/nodes/{node}/cmd``.

    ``args`` stays a JSON object in the envelope so a node with older software can still read the envelope and
    answer ``refused: unknown command`` instead of dead-lettering it; each side then validates ``args`` with the
    model registered for ``name`` in ``COMMAND_ARGS``. ``expires_at`` matters because the broker keeps QoS 1
    messages for a node that is offline: a snapshot asked for yesterday must not run today.
    """

    schema_: Literal["streetwatch.command/1"] = Field(
        default=SCHEMA_COMMAND, alias="schema", description="Contract version."
    )
    request_id: uuid.UUID = Field(description="Minted by central; every answer carries it.")
    node_id: Identifier = Field(description="Node the command is for (must match the topic).")
    name: CommandName
    args: dict[str, object] = Field(default_factory=dict, description="Arguments, checked per command.")
    issued_at: AwareDatetime = Field(description="When central sent it (UTC).")
    expires_at: AwareDatetime = Field(description="After this the node refuses it as expired (UTC).")
    issued_by: str = Field(default="", max_length=64, description="Who asked (for the node's log).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _deadline_after_issue(self) -> Command:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Command:
        return cls.model_validate_json(payload)


class CommandState(StrEnum):
    """What a node says about a command: ``progress`` may come several times, the other three end it."""

    PROGRESS = "progress"
    OK = "ok"
    REFUSED = "refused"  # never started: unknown command, invalid args, expired, busy, wrong node
    FAILED = "failed"  # started but could not finish (camera down, upload refused, ...)


FINAL_STATES: Final = frozenset({CommandState.OK, CommandState.REFUSED, CommandState.FAILED})


class CommandResult(_Strict):
    """A node's answer on ``{prefix}/nodes/{node}/cmd/result`` (QoS 1) about one command."""

    schema_: Literal["streetwatch.command-result/1"] = Field(
        default=SCHEMA_COMMAND_RESULT, alias="schema", description="Contract version."
    )
    request_id: uuid.UUID = Field(description="The command's request id.")
    node_id: Identifier = Field(description="Node that answers.")
    name: CommandName
    state: CommandState = Field(description="progress, ok, refused or failed.")
    reason: str | None = Field(
        default=None, max_length=4000, description="Why it was refused or failed (names the field)."
    )
    progress: Unit | None = Field(default=None, description="Fraction done, when the command can tell.")
    message: str = Field(
        default="", max_length=500, description="Short human-readable step, e.g. 'uploading'."
    )
    result: dict[str, object] = Field(
        default_factory=dict, description="What an ok command produced; checked with COMMAND_RESULTS[name]."
    )
    at: AwareDatetime = Field(description="When the node said so (UTC).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _reason_iff_not_ok(self) -> CommandResult:
        needs_reason = self.state in (CommandState.REFUSED, CommandState.FAILED)
        if needs_reason != (self.reason is not None):
            raise ValueError("reason must be set exactly when the state is refused or failed")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> CommandResult:
        return cls.model_validate_json(payload)


class SnapshotArgs(_Strict):
    """``snapshot``: a fresh frame of each camera asked for, uploaded as evidence (``EvidenceKind.SNAPSHOT``)."""

    cameras: list[Identifier] = Field(
        default_factory=list, max_length=64, description="Camera ids; empty means every camera of the node."
    )
    max_age_s: float = Field(
        default=10.0,
        gt=0.0,
        le=300.0,
        description="Frames older than this count as no frame (camera down); 10 s like the capture stall watchdog.",
    )
    quality: int = Field(default=90, ge=30, le=100, description="JPEG quality.")


class CameraSnapshot(_Strict):
    camera_id: Identifier = Field(description="Camera the frame is from.")
    sha256: Sha256Hex = Field(
        description="Evidence hash of the JPEG (fetch it from central's evidence store)."
    )
    width: int = Field(gt=0, le=16384, description="Frame width in pixels.")
    height: int = Field(gt=0, le=16384, description="Frame height in pixels.")
    captured_at: AwareDatetime = Field(description="When the frame was read (UTC).")


class SnapshotResult(_Strict):
    snapshots: list[CameraSnapshot] = Field(max_length=64, description="One per camera that had a frame.")
    missing: dict[str, str] = Field(
        default_factory=dict, description="Cameras without a fresh frame, with the reason."
    )


# Per-command argument and result models, shared by central (validates before sending) and the node
# (validates before running). A new command adds its two models here; nothing else in the contract changes.
COMMAND_ARGS: Final[dict[str, type[BaseModel]]] = {"snapshot": SnapshotArgs}
COMMAND_RESULTS: Final[dict[str, type[BaseModel]]] = {"snapshot": SnapshotResult}


class ModelArgs(_Strict):
    """``model``: download a detector from central, check it, swap it in live, roll back if it misbehaves."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.onnx$", description="File name, e.g. 'yolov8n.onnx'."
    )
    sha256: Sha256Hex = Field(description="SHA-256 central recorded; the node refuses a file that differs.")
    size: int = Field(gt=0, le=2 * 1024**3, description="Size in bytes central recorded.")
    url: str = Field(
        pattern=r"^/api/v1/models/[0-9a-f]{64}/file$",
        description="Path on central (the node's central_url) to GET with the node's own token.",
    )
    trial_timeout_s: float = Field(
        default=120.0, gt=0.0, le=900.0, description="Longest the first run on a live frame may take."
    )
    stall_s: float = Field(
        default=30.0,
        gt=0.0,
        le=600.0,
        description="After the swap, one detector call longer than this is a stall: the old model comes back.",
    )
    watch_s: float = Field(
        default=60.0,
        ge=0.0,
        le=3600.0,
        description="How long the node watches the new model before answering ok.",
    )


class ModelResult(_Strict):
    model: ModelRef = Field(description="The detector running now.")
    previous: ModelRef = Field(description="The one it replaced (kept on disk for a rollback).")
    input_size: int = Field(gt=0, le=8192, description="The new model's input size in pixels.")
    classes: int = Field(gt=0, description="How many classes the new model knows.")
    trial_ms: float = Field(ge=0.0, description="Time of the trial run on a live frame.")
    trial_detections: int = Field(ge=0, description="Objects the trial run found on that frame.")
    watched_calls: int = Field(ge=0, description="Detector calls the new model served during the watch.")


COMMAND_ARGS["model"] = ModelArgs
COMMAND_RESULTS["model"] = ModelResult


MAX_EXTRACT_S: Final = 30 * 60


class ExtractArgs(_Strict):
    """``extract``: cut a camera's recorded footage over a time range and upload it as evidence (a clip)."""

    camera_id: Identifier = Field(description="Camera on the node.")
    start: AwareDatetime = Field(description="Start of the range (UTC).")
    end: AwareDatetime = Field(description="End of the range (UTC).")

    @model_validator(mode="after")
    def _sane_range(self) -> ExtractArgs:
        seconds = (self.end - self.start).total_seconds()
        if seconds <= 0:
            raise ValueError("end must be after start")
        if seconds > MAX_EXTRACT_S:
            raise ValueError(f"the range is {seconds:.0f} s; at most {MAX_EXTRACT_S} s per request")
        return self


class ExtractResult(_Strict):
    sha256: Sha256Hex = Field(
        description="Evidence hash of the clip (uploaded to central before the answer)."
    )
    size: int = Field(gt=0, description="Bytes.")
    content_type: Literal["video/mp4"] = Field(default="video/mp4", description="MIME type.")
    recorded_start: AwareDatetime = Field(description="Time of the clip's first frame (UTC).")
    recorded_end: AwareDatetime = Field(description="Time just after its last frame (UTC).")
    segments: int = Field(ge=1, description="Recording segments it was cut from.")


COMMAND_ARGS["extract"] = ExtractArgs
COMMAND_RESULTS["extract"] = ExtractResult
