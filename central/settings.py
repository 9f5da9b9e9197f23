"""Central's configuration, read from ``STREETWATCH_*`` environment variables.

Every field is typed and described so that ``streetwatch-central`` can tell an operator exactly which variable
is missing or wrong instead of starting half-configured. Secrets that protect officers' evidence (the admin
password, the node upload token) have no defaults on purpose: a deployment that forgot them must not start
with a well-known value.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_agent.contract import DEFAULT_TOPIC_PREFIX, Topics

ENV_PREFIX = "STREETWATCH_"

# Passwords that show up first in every credential-stuffing list; refusing them is cheap insurance.
_WEAK_PASSWORDS = frozenset(
    {
        "admin",
        "admin123",
        "admin1234",
        "administrator",
        "changeme",
        "changethis",
        "change-me",
        "default",
        "letmein",
        "password",
        "password1",
        "password123",
        "qwerty123",
        "secret",
        "streetwatch",
        "12345678",
        "123456789",
        "1234567890",
    }
)
MIN_ADMIN_PASSWORD_LENGTH = 8
MIN_SECRET_KEY_LENGTH = 32
MIN_NODE_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """All knobs of the central server; see each field's description (also shown by config errors)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    database_url: str = Field(
        default="sqlite:///var/central/streetwatch.db",
        description=(
            "SQLAlchemy URL of the database. SQLite paths are relative to the working directory and their "
            "parent folder is created; use postgresql+psycopg://user:pass@host/db in production."
        ),
    )
    data_dir: Path = Field(
        default=Path("var/central"),
        description="Folder for central's files; evidence bytes live under <data_dir>/evidence.",
    )
    mqtt_enabled: bool = Field(
        default=True,
        description=(
            "Run the MQTT ingest subscriber in this process. Turn off for API-only replicas behind a load "
            "balancer, where separate ingest workers consume the broker."
        ),
    )
    mqtt_host: str | None = Field(
        default=None,
        description="Host of the MQTT broker to ingest from. Unset: start an embedded broker in-process.",
    )
    mqtt_port: int = Field(default=1883, ge=1, le=65535, description="Port of the external MQTT broker.")
    embedded_mqtt_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the embedded broker (anonymous access, so keep it on loopback).",
    )
    embedded_broker: Literal["auto", "mosquitto", "amqtt"] = Field(
        default="auto",
        description="Which broker central embeds when STREETWATCH_MQTT_HOST is unset: 'mosquitto' (a child "
        "process with per-node credentials and ACLs, persistence), 'amqtt' (in-process, anonymous, no ACL), or "
        "'auto': Mosquitto when its binary is installed, else amqtt.",
    )
    embedded_mqtt_port: int = Field(
        default=1883, ge=1, le=65535, description="Bind port of the embedded broker."
    )
    mqtt_username: str | None = Field(default=None, description="Username central uses on the broker.")
    mqtt_password: SecretStr | None = Field(default=None, description="Password central uses on the broker.")
    mqtt_client_id: str | None = Field(
        default=None,
        description=(
            "MQTT client id. Must be stable across restarts so the broker keeps central's persistent session "
            "(QoS 1 events queued while central was down). Unset: central-<hostname>."
        ),
    )
    mqtt_shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description=(
            "Share the node events among N ingest workers through the MQTT shared subscription "
            "$share/<group>/<prefix>/nodes/+/events (needs an external broker; the subscriber then speaks "
            "MQTT 5, which Mosquitto requires for shared subscriptions). Unset: a plain subscription, MQTT 3.1.1."
        ),
    )
    mqtt_session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=4_294_967_295,
        description=(
            "MQTT 5 only (shared group set): seconds the broker keeps central's session, and the events queued "
            "for it, after the connection ends."
        ),
    )
    ingest_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Ingest worker threads in this process, each committing batches (PostgreSQL benefits from "
        "several; SQLite has one writer at a time).",
    )
    ingest_batch_max: int = Field(
        default=500, ge=1, le=10_000, description="At most this many messages per ingest transaction."
    )
    ingest_batch_wait_s: float = Field(
        default=0.02,
        ge=0.0,
        le=5.0,
        description="How long a worker waits for a batch to fill before committing what it has.",
    )
    ingest_require_enrollment: bool = Field(
        default=True,
        description="Dead-letter events from nodes that are not enrolled or were revoked (whatever the broker "
        "let through). Turn off only for tests and demos without enrollment.",
    )
    ingest_max_event_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        le=16 * 1024 * 1024,
        description="Largest event payload accepted; bigger ones are dead-lettered (payload truncated).",
    )
    dead_letter_retention_days: float = Field(
        default=30.0, gt=0.0, le=3650.0, description="Dead letters older than this are deleted."
    )
    dead_letter_max_rows: int = Field(
        default=100_000,
        ge=100,
        le=100_000_000,
        description="At most this many dead letters are kept (the oldest go first); each keeps <= 64 KiB.",
    )
    ingest_stall_s: float = Field(
        default=60.0,
        gt=0.0,
        le=86_400.0,
        description="/healthz turns unhealthy when a received message has waited this long without being "
        "committed (ingest stalled: database locked or unreachable).",
    )
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX, description="Topic prefix of the wire contract.")
    admin_user: str = Field(
        default="admin",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.@-]+$",
        description="Username of the bootstrap administrator, created or updated at every start.",
    )
    admin_password: SecretStr = Field(
        description=(
            f"Password of the bootstrap administrator (required; at least {MIN_ADMIN_PASSWORD_LENGTH} "
            "characters, not an obvious default). Stored only as an argon2 hash."
        ),
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            f"Key that signs session cookies (at least {MIN_SECRET_KEY_LENGTH} characters). Unset: a random "
            "key per process, so logins do not survive a restart and replicas cannot share sessions."
        ),
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Mark the session cookie Secure (send it over HTTPS only); turn on behind TLS.",
    )
    session_max_age_s: int = Field(
        default=12 * 3600, ge=60, description="Lifetime of a login session in seconds (one shift by default)."
    )
    timezone: str = Field(
        default="Asia/Ho_Chi_Minh",
        description="IANA time zone in which pages show times (UTC stays on hover and in exports).",
    )
    claim_lease_s: int = Field(
        default=600, ge=30, le=24 * 3600, description="How long an officer's claim on an event lasts."
    )
    signing_key_file: Path | None = Field(
        default=None,
        description=(
            "PEM file of central's Ed25519 key that signs case exports. Unset: <data_dir>/signing-key.pem, "
            "created at first use."
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Asia/Ho_Chi_Minh)"
            ) from None
        return value

    node_token: SecretStr = Field(
        description=(
            f"Bearer token nodes present when uploading evidence (required; at least {MIN_NODE_TOKEN_LENGTH} "
            "characters). One shared token until per-node enrollment exists."
        ),
    )
    s3_bucket: str | None = Field(
        default=None,
        description="Keep evidence in this S3-compatible bucket (AWS S3, MinIO, Ceph RGW) instead of data_dir; "
        "credentials come from boto3's chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, instance role).",
    )
    s3_prefix: str = Field(
        default="evidence/", max_length=256, description="Key prefix of evidence objects in the bucket."
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="The S3 endpoint of MinIO/Ceph (e.g. https://minio.internal:9000); unset for AWS.",
    )
    s3_region: str | None = Field(default=None, description="S3 region (AWS); MinIO/Ceph accept any.")
    max_evidence_bytes: int = Field(
        default=50 * 1024 * 1024, gt=0, description="Largest evidence upload accepted, in bytes."
    )
    broker_password_file: Path | None = Field(
        default=None,
        description=(
            "Mosquitto password_file central writes from its node table (PBKDF2 hashes of every enrolled node "
            "and of central's own user, STREETWATCH_MQTT_USERNAME/_PASSWORD). Unset: central does not manage "
            "broker credentials. Set together with STREETWATCH_BROKER_ACL_FILE."
        ),
    )
    broker_acl_file: Path | None = Field(
        default=None,
        description=(
            "Mosquitto acl_file central writes: each node may publish only under its own nodes/<id>/ and read "
            "only its own config and cmd; central reads everything under the topic prefix."
        ),
    )
    broker_pid_file: Path | None = Field(
        default=None,
        description=(
            "Mosquitto's pid_file: central sends that process SIGHUP after rewriting the files so enrollments "
            "and revocations take effect. Unset: the files are written and the broker must be reloaded by hand."
        ),
    )
    login_throttle_account: str = Field(
        default="10/15 minutes",
        description="Failed logins one account may have in a moving window (``limits`` notation) before "
        "further attempts are refused.",
    )
    login_throttle_address: str = Field(
        default="50/15 minutes",
        description="Failed logins one client address may have in a moving window (``limits`` notation).",
    )
    login_throttle_storage: str = Field(
        default="memory://",
        description="``limits`` storage URI for the login counters; share one (redis://...) across replicas.",
    )
    session_idle_s: int = Field(
        default=2 * 3600,
        ge=60,
        description="A login session unused for this long ends (seconds); STREETWATCH_SESSION_MAX_AGE_S caps "
        "its total length.",
    )
    enrollment_token_ttl_s: int = Field(
        default=900,
        ge=60,
        le=86_400,
        description="Lifetime of a one-time enrollment token in seconds (a request may ask for less).",
    )
    fleet_sync_s: float = Field(
        default=10.0,
        ge=0.5,
        le=3600.0,
        description=(
            "How often central re-checks that the broker files match the database and that every node's newest "
            "config is retained on the broker (accepting a config publishes it at once; this is the safety net)."
        ),
    )
    signal_token: SecretStr | None = Field(
        default=None,
        description=(
            f"Bearer token a traffic-signal controller presents to POST /api/v1/signals/<feed> (at least "
            f"{MIN_NODE_TOKEN_LENGTH} characters); central relays the state to the nodes over MQTT. Unset: only "
            "logged-in admins and operators may post signal states."
        ),
    )
    heartbeat_retention_s: int = Field(
        default=48 * 3600,
        ge=600,
        le=90 * 86_400,
        description=(
            "How long heartbeats are kept for the node page's charts (older rows are pruned as new ones arrive); "
            "one row per node per heartbeat (30 s by default), so 48 h is ~5,800 rows per node."
        ),
    )
    heartbeat_stale_s: float = Field(
        default=90.0,
        ge=5.0,
        le=86_400.0,
        description=(
            "A node whose status says online but whose last heartbeat is older than this is shown as stale "
            "(three missed heartbeats at the node's default 30 s)."
        ),
    )

    @field_validator("admin_password")
    @classmethod
    def _strong_admin_password(cls, value: SecretStr) -> SecretStr:
        password = value.get_secret_value()
        if len(password) < MIN_ADMIN_PASSWORD_LENGTH:
            raise ValueError(f"must be at least {MIN_ADMIN_PASSWORD_LENGTH} characters long")
        if password.strip().lower() in _WEAK_PASSWORDS:
            raise ValueError("is an obvious default password; choose a real one")
        return value

    @field_validator("login_throttle_account", "login_throttle_address")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit like '10/15 minutes'") from None
        return value

    @field_validator("signal_token")
    @classmethod
    def _long_signal_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_NODE_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_NODE_TOKEN_LENGTH} characters")
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_KEY_LENGTH} characters (try: python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("node_token")
    @classmethod
    def _long_node_token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_NODE_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_NODE_TOKEN_LENGTH} characters long")
        return value

    @field_validator("mqtt_shared_group")
    @classmethod
    def _shared_group_needs_external_broker(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("mqtt_host") is None:
            raise ValueError(
                "needs an external broker (STREETWATCH_MQTT_HOST): the embedded one has no shared subscriptions"
            )
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        Topics(value)  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _broker_files_together(self) -> Settings:
        if (self.broker_password_file is None) != (self.broker_acl_file is None):
            raise ValueError("STREETWATCH_BROKER_PASSWORD_FILE and STREETWATCH_BROKER_ACL_FILE go together")
        if self.broker_password_file is not None and (
            self.mqtt_username is None or self.mqtt_password is None
        ):
            raise ValueError(
                "a managed broker password file needs central's own broker user: set STREETWATCH_MQTT_USERNAME "
                "and STREETWATCH_MQTT_PASSWORD"
            )
        return self

    @property
    def evidence_dir(self) -> Path:
        """Where evidence bytes are stored (content-addressed by SHA-256)."""
        return self.data_dir / "evidence"

    @property
    def effective_mqtt_client_id(self) -> str:
        """The configured client id, or ``central-<hostname>`` so restarts resume the same session."""
        return self.mqtt_client_id or f"central-{socket.gethostname()}"


def env_var_name(field: str) -> str:
    """The environment variable that sets ``field`` (used in error messages)."""
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """``STREETWATCH_*`` variables that match no setting (pydantic-settings ignores them; usually a typo)."""
    known = {env_var_name(name) for name in Settings.model_fields}
    return sorted(
        name for name in environ if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )


def generate_secret_key() -> str:
    """A fresh random session-signing key for a process that was not given one."""
    return secrets.token_urlsafe(48)
