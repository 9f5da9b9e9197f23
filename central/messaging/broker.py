"""The embedded MQTT broker of single-box installs (``make demo``): Mosquitto when installed, else amqtt.

When no external broker is configured, central starts one itself:

* **Mosquitto** (``EmbeddedMosquitto``, chosen whenever the ``mosquitto`` binary is installed, or with
  ``STREETWATCH_EMBEDDED_BROKER=mosquitto``): a child process with a config central writes under
  ``<data_dir>/broker``: no anonymous access, the same ``password_file``/``acl_file`` central renders from its
  node table for an external Mosquitto (each node may publish only as itself; ``broker_auth.py``), reloaded by
  SIGHUP through its pid file, persistence on, no queue limit. Central's own broker user is
  ``STREETWATCH_MQTT_USERNAME``/``_PASSWORD`` or, when unset, ``central`` with a random password kept in
  ``<data_dir>/broker/central.secret`` (0600). Central's persistent session survives central's reconnects.
* **amqtt** (``EmbeddedBroker``, the fallback when Mosquitto is not installed): in a background thread with its
  own asyncio loop. It allows anonymous clients (so it binds to loopback by default), has no ACL, and forgets
  unacknowledged messages of a client that reconnects (measured: 1,998 of 2,000 lost), so the end-to-end acks
  are what keeps delivery whole there: nodes republish what central never acknowledged. Use it to try
  streetwatch, not for nodes on real networks.

``/healthz`` and the startup log say which one runs (``describe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
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
        return f"amqtt (embedded, anonymous, no ACL) on {self.host}:{self.port}"

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


def find_mosquitto() -> str | None:
    """The Mosquitto binary (PATH, then Debian's /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def mosquitto_config(
    host: str, port: int, directory: Path, password_file: Path, acl_file: Path, pid_file: Path
) -> str:
    """The embedded Mosquitto's configuration: authenticated, per-node ACL, persistent, no queue limit."""
    lines = [
        "# Written by streetwatch central (embedded broker); edits are overwritten.",
        f"listener {port} {host}",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        f"pid_file {pid_file}",
        "persistence true",
        f"persistence_location {directory}/",
        "autosave_interval 30",
        "max_queued_messages 0",
        "max_inflight_messages 1000",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:  # as root Mosquitto drops to user 'mosquitto', who cannot read central's 0640 files
        lines.append("user root")
    return "\n".join(lines) + "\n"


class EmbeddedMosquitto:
    """Mosquitto as central's child process (see the module doc); ``start()`` returns once it listens."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        host: str,
        port: int,
        *,
        password_file: Path,
        acl_file: Path,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.host = host
        self.port = port
        self.password_file = password_file
        self.acl_file = acl_file
        self.pid_file = directory / "mosquitto.pid"
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def describe(self) -> str:
        pid = self._process.pid if self._process else None
        return f"mosquitto (embedded, pid {pid}) on {self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Write the config and start Mosquitto; the password and ACL files must exist (central writes them)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "mosquitto.conf"
        _stop_stale(self.pid_file, config)
        config.write_text(
            mosquitto_config(
                self.host, self.port, self.directory, self.password_file, self.acl_file, self.pid_file
            )
        )
        self._process = subprocess.Popen(
            [self.binary, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self._start_timeout_s
        address = (connect_host(self.host), self.port)
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise BrokerStartError(
                    f"embedded Mosquitto exited at start: {err.strip() or self._log_tail()}"
                )
            try:
                import socket

                socket.create_connection(address, timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            self.pid_file.write_text(f"{self._process.pid}\n")  # as root Mosquitto may not write it itself
            log.info("embedded broker: %s", self.describe())
            return
        self.stop()
        raise BrokerStartError(f"embedded Mosquitto did not listen on {self.host}:{self.port} in time")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout_s)
        log.info("embedded Mosquitto stopped")
        self._process = None

    def _log_tail(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


def _stop_stale(pid_file: Path, config: Path) -> None:
    """A central that was SIGKILLed leaves its Mosquitto running on the port: stop that one (only if its command
    line names our config file, so an unrelated process that reused the pid is left alone)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if pid > 1 and str(config).encode() in cmdline:
        log.warning("stopping the embedded Mosquitto (pid %d) left behind by a previous central", pid)
        with contextlib.suppress(OSError):
            os.kill(pid, 15)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)


def connect_host(bind_host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)
