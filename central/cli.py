"""``streetwatch-central``: run the central server (web UI, API, MQTT ingest) under uvicorn.

Configuration comes from ``STREETWATCH_*`` environment variables only (see ``central.settings``). A missing or
invalid variable stops the program before anything starts, with one paragraph naming the variable, and exit
status 2 (the usual "usage error"), so a service manager does not restart it in a loop unnoticed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import uvicorn
from pydantic import ValidationError

from central import __version__
from central.app import create_app
from central.settings import Settings, env_var_name, unknown_env_vars

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1
EXIT_CONFIG = 2
LOG_LEVELS = ("debug", "info", "warning", "error")
# Libraries that are chatty at INFO about every packet/state change.
_NOISY_LOGGERS = ("amqtt", "transitions")


def format_settings_error(exc: ValidationError) -> str:
    """One readable paragraph naming each environment variable that is missing or invalid."""
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = env_var_name(field) if field else "the configuration"
        info = Settings.model_fields.get(field)
        description = f" ({info.description})" if info is not None and info.description else ""
        if error["type"] == "missing":
            problems.append(f"{name} is required but not set{description}.")
        elif error["type"] == "extra_forbidden":
            problems.append(f"{name} is not a known setting.")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name} is invalid: {message}.")
    return (
        "streetwatch-central: cannot start, the configuration is incomplete. "
        + " ".join(problems)
        + " Set the environment variable(s) and start again."
    )


def configure_logging(level: str) -> None:
    numeric = getattr(logging, level.upper())
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streetwatch-central",
        description="Central server: review queue, JSON API, evidence store and MQTT ingest. "
        "Configured with STREETWATCH_* environment variables. Other commands: 'users' (accounts: add, disable, "
        "enable, reset-password, wards, list), 'audit verify' (check the audit log's hash chain), 'wards' "
        "(add, list, camera placement), 'verify-case FILE.zip' and 'signing-key' (case exports); "
        "run them with --help.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve HTTP on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default: %(default)s")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


@contextmanager
def _quiet_signal_replay() -> Iterator[None]:
    """Make a graceful SIGINT/SIGTERM shutdown end with exit status 0.

    After its graceful shutdown uvicorn re-raises the signal it caught against the handler that was installed
    before it started; with Python's defaults that is a KeyboardInterrupt traceback or death by SIGTERM. A
    no-op handler turns that replay into nothing, so ``main`` returns normally.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    log.debug("signal %d after shutdown ignored", signum)


def _subcommands() -> dict[str, Callable[[Sequence[str]], int]]:
    """``streetwatch-central NAME ...``: tools that work on the database instead of serving.

    Imported lazily so serving does not pay for them; each takes the remaining arguments.
    """
    from central.cli_accounts import audit_main, users_main
    from central.cli_cases import signing_key_main, verify_case_main, wards_main

    return {
        "users": users_main,
        "audit": audit_main,
        "verify-case": verify_case_main,
        "signing-key": signing_key_main,
        "wards": wards_main,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 after a clean Ctrl-C / SIGTERM shutdown).

    Without a subcommand it runs the server (as it always has); ``users``/``audit`` manage accounts and
    check the audit chain (``central.cli_accounts``).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and not arguments[0].startswith("-"):
        commands = _subcommands()
        if arguments[0] in commands:
            return commands[arguments[0]](arguments[1:])
    args = build_parser().parse_args(arguments)
    configure_logging(args.log_level)
    try:
        settings = Settings()  # required fields come from the environment
    except ValidationError as exc:
        print(format_settings_error(exc), file=sys.stderr)
        return EXIT_CONFIG
    for name in unknown_env_vars(os.environ):
        log.warning("%s is not a central setting and is ignored (a typo?)", name)
    app = create_app(settings)
    # uvicorn installs SIGINT/SIGTERM handlers that trigger a graceful shutdown, which runs the app's
    # lifespan exit (subscriber, broker, database). log_config=None: keep our logging setup.
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, log_config=None)
    )
    with _quiet_signal_replay():
        server.run()
    if not server.started:
        print("streetwatch-central: startup failed, see the log above.", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
