"""A real, throwaway PostgreSQL server for tests.

``provide_postgres_url()`` (behind the session-scoped ``postgres_url`` fixture in ``tests/conftest.py``) yields a
``postgresql+psycopg://`` URL of an empty database:

* ``TEST_POSTGRES_URL`` set: that URL as is (an existing throwaway database; nothing is started).
* otherwise, the PostgreSQL server binaries installed (Debian: ``apt-get install postgresql``, which puts them
  in ``/usr/lib/postgresql/<version>/bin``; elsewhere ``initdb``/``pg_ctl``/``postgres`` on PATH): a fresh
  cluster in a temp dir, started on a free loopback port, stopped and removed afterwards. ``initdb`` and the
  server refuse to run as root, so as root they run as the unprivileged ``postgres`` user.
* neither: the tests are skipped locally, but fail in CI (``CI`` set), like the ``mosquitto`` fixture.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV_URL = "TEST_POSTGRES_URL"
SUPERUSER = "postgres"
DATABASE = "streetwatch_test"
INITDB_TIMEOUT_S = 120.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it
ROOT_PREFIX = "streetwatch-pg-"
OWNER_FILE = "owner.pid"  # the test process that started the cluster: see reap_stale_clusters()
INSTALL_HINT = "apt-get install postgresql, or set TEST_POSTGRES_URL to a throwaway database"


def unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where a silently skipped PostgreSQL run would hide a broken backend."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: the newest Debian install, else PATH; or None."""
    needed = ("initdb", "pg_ctl", "postgres")

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(candidate) / tool, os.X_OK) for tool in needed):
            return Path(candidate)
    found = [shutil.which(tool) for tool in needed]
    if all(found):
        directory = Path(str(found[0])).parent
        if all((directory / tool).exists() for tool in needed):
            return directory
    return None


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _others_can_traverse(path: Path) -> bool:
    """Whether every folder from / down to ``path`` is searchable by any user (mode o+x)."""
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in (path, *path.parents))


@dataclass
class PostgresServer:
    """A running throwaway cluster; ``url`` points at its empty ``streetwatch_test`` database."""

    root: Path
    port: int
    bindir: Path
    process: subprocess.Popen[bytes]
    run_as: dict[str, Any]  # Popen keyword arguments that drop root privileges (empty when not root)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _run_as() -> dict[str, Any]:
    """As root: run server tools as the ``postgres`` user (no supplementary groups); otherwise as ourselves."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no 'postgres' user to run the PostgreSQL server as")
        raise  # unreachable: unavailable() always raises
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _temp_base(run_as: dict[str, Any]) -> Path:
    base = Path(tempfile.gettempdir())
    if run_as and not _others_can_traverse(base):
        base = Path("/tmp")  # e.g. TMPDIR under /root: the postgres user could not reach the cluster
    return base


def _make_root(run_as: dict[str, Any]) -> Path:
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=_temp_base(run_as)))
    (root / OWNER_FILE).write_text(f"{os.getpid()}\n")
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_clusters(bindir: Path, run_as: dict[str, Any]) -> None:
    """Stop and remove clusters left by test runs that died without teardown (SIGKILL, SIGTERM, a crash).

    Only folders whose owning process is gone: concurrent test runs on the same machine are left alone.
    """
    for root in Path(_temp_base(run_as)).glob(f"{ROOT_PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        if owner == os.getpid() or _alive(owner):
            continue
        if (root / "data" / "postmaster.pid").exists():
            _pg_ctl_stop(bindir, root, "immediate", run_as)
        shutil.rmtree(root, ignore_errors=True)


def _pg_ctl_stop(bindir: Path, root: Path, mode: str, run_as: dict[str, Any]) -> None:
    """``pg_ctl stop`` the cluster in ``root``, waiting at most STOP_TIMEOUT_S; errors are ignored."""
    command = [str(bindir / "pg_ctl"), "stop", "--pgdata", str(root / "data"), "--mode", mode, "--wait"]
    command += ["--timeout", str(int(STOP_TIMEOUT_S)), "--silent"]
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            command, capture_output=True, timeout=STOP_TIMEOUT_S + 5, cwd=root, check=False, **run_as
        )


def _initdb(bindir: Path, root: Path, run_as: dict[str, Any]) -> None:
    command = [
        str(bindir / "initdb"),
        "--pgdata",
        str(root / "data"),
        "--username",
        SUPERUSER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--no-sync",
    ]
    result = subprocess.run(
        command, capture_output=True, timeout=INITDB_TIMEOUT_S, cwd=root, check=False, **run_as
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise RuntimeError(f"initdb failed with status {result.returncode}:\n{output}")


def _connect(port: int, dbname: str) -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, user=SUPERUSER, dbname=dbname, connect_timeout=2, autocommit=True
    )


def _wait_ready(server: PostgresServer, timeout_s: float) -> None:
    """Poll until the server accepts queries (it listens before it is ready); raise on timeout or exit."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited with status {server.process.returncode}:\n{server.log()}")
        try:
            with _connect(server.port, "postgres") as connection:
                connection.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"postgres not ready on port {server.port} after {timeout_s} s: {exc}\n{server.log()}"
                ) from None
            time.sleep(0.05)


def _launch(bindir: Path, root: Path, run_as: dict[str, Any]) -> PostgresServer:
    port = _free_port()
    command = [
        str(bindir / "postgres"),
        "-D",
        str(root / "data"),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={root}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
    ]
    with open(root / "postgres.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=root, **run_as
        )
    return PostgresServer(root, port, bindir, process, run_as)


def start_server(bindir: Path) -> PostgresServer:
    """initdb a cluster in a fresh temp dir, start it, create the test database; clean up on any failure."""
    run_as = _run_as()
    reap_stale_clusters(bindir, run_as)
    root = _make_root(run_as)
    server: PostgresServer | None = None
    try:
        _initdb(bindir, root, run_as)
        for attempt in range(1, START_ATTEMPTS + 1):
            server = _launch(bindir, root, run_as)
            try:
                _wait_ready(server, START_TIMEOUT_S)
                break
            except RuntimeError:  # exited early: most likely the port was taken meanwhile; try another
                server = None
                if attempt == START_ATTEMPTS:
                    raise
        assert server is not None
        with _connect(server.port, "postgres") as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        return server
    except BaseException:
        if server is not None:
            stop_server(server)
        else:
            shutil.rmtree(root, ignore_errors=True)
        raise


def stop_server(server: PostgresServer) -> None:
    """``pg_ctl stop -m fast`` (bounded), kill as a last resort, then remove the cluster's folder."""
    try:
        if server.process.poll() is None:
            _pg_ctl_stop(server.bindir, server.root, "fast", server.run_as)
        try:
            server.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    finally:
        shutil.rmtree(server.root, ignore_errors=True)


def provide_postgres_url() -> Iterator[str]:
    """Generator behind the ``postgres_url`` fixture: an empty PostgreSQL database's URL, for the session."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        unavailable(f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found ({INSTALL_HINT})")
        return
    server = start_server(bindir)
    try:
        yield server.url
    finally:
        stop_server(server)
