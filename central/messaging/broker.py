"""An embedded MQTT broker (amqtt) for single-box installs and development.

A small site should not need to install and secure Mosquitto just to try streetwatch: when no external broker
is configured, central runs amqtt in a background thread with its own asyncio loop. It allows anonymous
clients, so it binds to loopback by default; anything bigger (per-node credentials and ACLs, persistence
across restarts, shared subscriptions) belongs on a real broker such as Mosquitto or EMQX (design notes,
section 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (port in use, bad address...)."""


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt configuration: one TCP listener and anonymous access, nothing else (no $SYS chatter)."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "listeners": {"default": {"type": "tcp", "bind": bind}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedBroker:
    """amqtt running in a daemon thread; ``start()`` returns once it listens, ``stop()`` once it is closed."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, *, start_timeout_s: float = 15.0) -> None:
        self.host = host
        self.port = port
        self._start_timeout_s = start_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def describe(self) -> str:
        """Which broker runs embedded (for /healthz and the startup log)."""
        return f"amqtt (embedded) on {self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def start(self) -> None:
        """Start listening on ``host:port``; raises ``BrokerStartError`` if that fails."""
        if self._thread is not None:
            raise RuntimeError("embedded broker already started")
        if not _is_loopback(self.host):
            log.warning(
                "embedded MQTT broker allows anonymous clients and binds to %s, which is not loopback; "
                "any host that can reach it can publish events",
                self.host,
            )
        self._thread = threading.Thread(target=self._run, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(self._start_timeout_s):
            raise BrokerStartError(f"embedded MQTT broker did not start within {self._start_timeout_s} s")
        if self._error is not None:
            self._thread.join(timeout=5)
            raise BrokerStartError(
                f"embedded MQTT broker could not listen on {self.host}:{self.port}: {self._error}"
            ) from self._error
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the broker down (disconnecting clients) and join its thread; safe to call twice."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout_s)
        if thread.is_alive():
            log.error("embedded MQTT broker did not stop within %.1f s", timeout_s)
        else:
            log.info("embedded MQTT broker stopped")
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() or logged; the thread must not die silently
            if not self._started.is_set():
                self._error = exc
            else:
                log.exception("embedded MQTT broker failed")
        finally:
            self._started.set()
            _cancel_pending(loop)
            loop.close()

    async def _serve(self) -> None:
        # Imported here: amqtt pulls in websockets/transitions, which only this code path needs.
        from amqtt.broker import Broker

        self._stop_event = asyncio.Event()
        broker = Broker(broker_config(self.host, self.port))
        await broker.start()
        self._started.set()
        try:
            await self._stop_event.wait()
        finally:
            await broker.shutdown()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel tasks amqtt left behind so the loop closes without 'Task was destroyed' warnings."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
