"""The FastAPI application: wiring of settings, database, stores, MQTT and routes.

``create_app`` only builds objects; everything that touches the outside world (migrations, the admin
bootstrap, the embedded broker, the MQTT connection) happens in the lifespan, so importing or constructing the
app is cheap and a failed start cleans up what it had started.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central import __version__
from central.api import (
    openapi,
    routes_admin,
    routes_api,
    routes_audit,
    routes_auth,
    routes_cases,
    routes_commands,
    routes_events,
    routes_evidence,
    routes_extractions,
    routes_fleet,
    routes_health,
    routes_models,
    routes_nodes,
    routes_review,
    routes_signals,
    routes_stats,
    routes_wards,
    routes_web,
    routes_zones,
)
from central.api.deps import LoginRequiredError, PasswordChangeRequiredError
from central.context import Central
from central.db import migrate
from central.db.session import Database
from central.evidence import EvidenceStore
from central.evidence_s3 import S3EvidenceStore, S3Location
from central.fleet.extractions import register_hooks as register_extraction_hooks
from central.fleet.health import HeartbeatRecorder
from central.fleet.service import Fleet
from central.messaging.client import BrokerAddress
from central.messaging.embedded import embedded_settings, start_embedded
from central.messaging.ingest import Ingestor
from central.messaging.retention import prune_dead_letters
from central.messaging.subscriber import MqttSubscriber
from central.settings import Settings, generate_secret_key
from central.throttle import LoginThrottle
from central.users import bootstrap_admin
from edge_agent.contract import Topics, utcnow

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "streetwatch_session"
EMBEDDED_CONNECT_TIMEOUT_S = 10.0

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
}


class SecurityHeadersMiddleware:
    """Adds conservative browser security headers to every response (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def start_services(central: Central) -> None:
    """Migrate, bootstrap the admin, then start the embedded broker and the MQTT subscriber (blocking)."""
    settings = central.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.evidence_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database_url)
    with central.db.session() as session:
        bootstrap_admin(
            session, settings.admin_user, settings.admin_password.get_secret_value(), central.clock()
        )
    if not settings.mqtt_enabled:
        log.info("MQTT ingest disabled in this process (STREETWATCH_MQTT_ENABLED=false)")
        return
    if settings.mqtt_host is None:
        central.broker = start_embedded(settings, central.topics)
        log.info("MQTT broker: %s", central.broker.describe())
    address = BrokerAddress.of(settings)
    central.subscriber = MqttSubscriber(
        central.ingestor,
        central.topics,
        host=address.host,
        port=address.port,
        client_id=address.client_id,
        username=address.username,
        password=address.password,
        shared_group=settings.mqtt_shared_group,
        session_expiry_s=settings.mqtt_session_expiry_s,
        workers=settings.ingest_workers,
        batch_max=settings.ingest_batch_max,
        batch_wait_s=settings.ingest_batch_wait_s,
        housekeeping=lambda: prune_dead_letters(
            central.db,
            central.clock(),
            retention_days=settings.dead_letter_retention_days,
            max_rows=settings.dead_letter_max_rows,
        ),
    )
    central.subscriber.start()
    if central.broker is not None and not central.subscriber.wait_connected(EMBEDDED_CONNECT_TIMEOUT_S):
        log.warning("MQTT: not yet subscribed to the embedded broker; still trying in the background")


def stop_services(central: Central) -> None:
    """Stop the subscriber, then the broker, then close the database; each step runs even if one fails."""
    steps: list[tuple[str, Callable[[], None] | None]] = [
        ("MQTT subscriber", central.subscriber.stop if central.subscriber else None),
        ("embedded broker", central.broker.stop if central.broker else None),
        ("database", central.db.dispose),
    ]
    for name, stop in steps:
        if stop is None:
            continue
        try:
            stop()
        except Exception:
            log.exception("stopping the %s failed", name)
    central.subscriber = None
    central.broker = None


def _session_secret(settings: Settings) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    log.warning(
        "STREETWATCH_SECRET_KEY is not set: using a random key for this process, so logins do not survive a "
        "restart and several replicas cannot share sessions"
    )
    return generate_secret_key()


def make_evidence_store(settings: Settings, clock: Callable[[], datetime]) -> EvidenceStore:
    """The filesystem store under data_dir, or S3 when ``STREETWATCH_S3_BUCKET`` is set."""
    if settings.s3_bucket is None:
        return EvidenceStore(settings.evidence_dir, max_bytes=settings.max_evidence_bytes, clock=clock)
    location = S3Location(
        settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url, settings.s3_region
    )
    log.info(
        "evidence store: s3://%s/%s (%s)", location.bucket, location.prefix, location.endpoint_url or "AWS"
    )
    return S3EvidenceStore(
        location, settings.evidence_dir, max_bytes=settings.max_evidence_bytes, clock=clock
    )


def create_app(settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """Build the central app; services start in its lifespan (``with TestClient(app)`` or uvicorn)."""
    settings = settings if settings is not None else Settings()  # required fields come from the environment
    settings = embedded_settings(settings)  # an embedded Mosquitto: central's broker user and files
    topics = Topics(settings.topic_prefix)
    db = Database(settings.database_url)
    central = Central(
        settings=settings,
        db=db,
        topics=topics,
        ingestor=Ingestor(
            db,
            topics,
            clock=clock,
            require_enrollment=settings.ingest_require_enrollment,
            max_event_bytes=settings.ingest_max_event_bytes,
        ),
        evidence=make_evidence_store(settings, clock),
        clock=clock,
    )
    fleet = Fleet(central)  # node enrollment, broker files, remote config (central/fleet)
    heartbeats = HeartbeatRecorder(db, retention_s=settings.heartbeat_retention_s)
    central.ingestor.heartbeat_sink = heartbeats.record  # fleet health pages (central/fleet/health.py)
    register_extraction_hooks(fleet.commands)  # extractions follow their node's extract command

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(start_services, central)
            await run_in_threadpool(fleet.start)
        except BaseException:
            await run_in_threadpool(fleet.stop)
            await run_in_threadpool(stop_services, central)
            raise
        log.info("central %s started", __version__)
        try:
            yield
        finally:
            await run_in_threadpool(fleet.stop)
            await run_in_threadpool(stop_services, central)
            log.info("central stopped")

    app = FastAPI(
        title="streetwatch central",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN; sites may have no internet. Schema below.
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.central = central
    app.state.fleet = fleet
    app.state.throttle = LoginThrottle(
        settings.login_throttle_account, settings.login_throttle_address, settings.login_throttle_storage
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=_session_secret(settings),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.session_cookie_secure,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(routes_health.router)
    app.include_router(routes_auth.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_api.router)
    app.include_router(routes_events.router)
    app.include_router(routes_evidence.router)
    app.include_router(routes_nodes.router)
    app.include_router(routes_commands.router)
    app.include_router(routes_zones.router)
    app.include_router(routes_fleet.router)
    app.include_router(routes_signals.router)
    app.include_router(routes_models.router)
    app.include_router(routes_extractions.router)
    app.include_router(routes_web.router)
    app.include_router(routes_review.router)
    app.include_router(routes_cases.router)
    app.include_router(routes_cases.api_router)
    app.include_router(routes_wards.router)
    app.include_router(routes_stats.router)

    @app.exception_handler(LoginRequiredError)
    async def _redirect_to_login(request: Request, exc: LoginRequiredError) -> RedirectResponse:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(PasswordChangeRequiredError)
    async def _redirect_to_password(request: Request, exc: PasswordChangeRequiredError) -> RedirectResponse:
        return RedirectResponse(exc.location, status_code=303)

    openapi.install(app)

    return app
