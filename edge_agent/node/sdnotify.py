"""systemd's notify protocol (``sd_notify(3)``), spoken directly: one datagram per message to ``$NOTIFY_SOCKET``.

Why: the unit runs the agent with ``Type=notify`` and ``WatchdogSec``, so systemd knows the agent is up only
once it says ``READY=1`` (the model is loaded and the threads run), and restarts it when ``WATCHDOG=1`` stops
arriving -- a hung detector loop is otherwise invisible, because the process is still there. The protocol is a
few bytes on an ``AF_UNIX`` datagram socket; ``python-systemd``/``sdnotify`` would be one more dependency.

Without ``NOTIFY_SOCKET`` (a shell, Docker, tests) every call is a no-op that returns False.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    """A filesystem path, or ``@name`` for Linux's abstract namespace; other kinds (vsock) are unsupported."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends state changes to systemd; knows the watchdog interval systemd asked for (``WATCHDOG_USEC``).

    >>> Notifier.from_env({}).send("READY=1")
    False
    >>> Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "60000000"}, pid=7).watchdog_s
    60.0
    >>> Notifier.from_env({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "8"}, pid=7).watchdog_s is None
    True
    """

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> Notifier:
        """From systemd's variables; ``WATCHDOG_PID`` naming another process means the watchdog is not ours."""
        env = os.environ if environ is None else environ
        me = os.getpid() if pid is None else pid
        watchdog_s: float | None = None
        try:
            usec = int(env.get("WATCHDOG_USEC", "0"))
            owner = int(env.get("WATCHDOG_PID", str(me)))
        except ValueError:
            usec, owner = 0, me
        if usec > 0 and owner == me:
            watchdog_s = usec / 1_000_000
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_s)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when systemd's socket took it."""
        if self.address is None:
            return False
        target = _address(self.address)
        if target is None:
            self._warn(f"unsupported NOTIFY_SOCKET {self.address!r}")
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall(message)
        except OSError as err:
            self._warn(f"cannot notify systemd at {self.address}: {err}")
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def watchdog(self, status: str) -> bool:
        return self.send("WATCHDOG=1", f"STATUS={status}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping: delivering what is spooled")

    def _warn(self, text: str) -> None:
        if not self._warned:  # once: a missing socket would otherwise log every few seconds
            self._warned = True
            log.warning("%s", text)
