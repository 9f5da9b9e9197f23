"""``streetwatch-central users ...`` and ``streetwatch-central audit verify``: accounts and the audit chain
from a shell on the central host.

They need only the database (``STREETWATCH_DATABASE_URL`` or ``--database-url``), not the server's other
settings, and migrate it first like the server does. Changes are audited with the actor ``@cli:<os user>``
(``@`` cannot start a username, so it never reads as a person's account). Exit status: 0 done, 1 refused or
chain broken, 2 usage/configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from collections.abc import Sequence
from typing import TextIO

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from central import audit, users
from central.db import migrate
from central.db.models import Role
from central.db.session import Database
from central.settings import ENV_PREFIX, Settings
from edge_agent.contract import utcnow

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


class DatabaseOnly(BaseSettings):
    """The one setting these commands need (the server's required secrets are not)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    database_url: str = Field(
        default=str(Settings.model_fields["database_url"].default), description="SQLAlchemy database URL."
    )


def _actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"@cli:{name}"[:64]


def _database(args: argparse.Namespace) -> Database:
    url = args.database_url or DatabaseOnly().database_url
    migrate.upgrade(url)
    return Database(url)


def _read_password(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> str | None:
    """--generate: a random one (printed); a terminal: asked twice; otherwise: the first line of stdin."""
    if args.generate_password:
        password = secrets.token_urlsafe(12)
        print(f"temporary password: {password}", file=out)
        return password
    if stdin.isatty():
        first = getpass.getpass("Temporary password: ")
        if first != getpass.getpass("Repeat: "):
            print("the two passwords differ", file=sys.stderr)
            return None
        return first
    return stdin.readline().rstrip("\r\n")


def _users_add(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    password = _read_password(args, sys.stdin, out)
    if password is None:
        return EXIT_USAGE
    with db.session() as session:
        users.create_user(
            session,
            username=args.name,
            role=args.role,
            password=password,
            wards=args.ward or [],
            actor=_actor(),
            now=utcnow(),
        )
    print(
        f"created {args.name} ({args.role}; wards: {', '.join(sorted(set(args.ward or []))) or 'none'})",
        file=out,
    )
    return EXIT_OK


def _users_disable(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    with db.session() as session:
        ended = users.disable_user(session, args.name, actor=_actor(), now=utcnow())
    print(f"disabled {args.name}; {ended} session(s) ended", file=out)
    return EXIT_OK


def _users_enable(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    with db.session() as session:
        users.enable_user(session, args.name, actor=_actor(), now=utcnow())
    print(f"enabled {args.name}", file=out)
    return EXIT_OK


def _users_reset(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    password = _read_password(args, sys.stdin, out)
    if password is None:
        return EXIT_USAGE
    with db.session() as session:
        ended = users.reset_password(session, args.name, password, actor=_actor(), now=utcnow())
    print(f"temporary password set for {args.name}; {ended} session(s) ended", file=out)
    return EXIT_OK


def _users_wards(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    with db.session() as session:
        users.set_wards(session, args.name, args.ward or [], actor=_actor(), now=utcnow())
    print(f"wards of {args.name}: {', '.join(sorted(set(args.ward or []))) or 'none'}", file=out)
    return EXIT_OK


def _users_list(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    with db.session() as session:
        accounts = users.list_users(session)
    if args.json:
        rows = [
            {
                "username": a.username,
                "role": a.role,
                "wards": list(a.wards),
                "disabled": a.disabled,
                "must_change_password": a.must_change_password,
            }
            for a in accounts
        ]
        print(json.dumps(rows, ensure_ascii=False), file=out)
        return EXIT_OK
    print(f"{'USERNAME':<24} {'ROLE':<11} {'STATE':<9} WARDS", file=out)
    for a in accounts:
        state = "disabled" if a.disabled else "active"
        print(f"{a.username:<24} {a.role:<11} {state:<9} {', '.join(a.wards) or '-'}", file=out)
    return EXIT_OK


def _audit_verify(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    with db.sessionmaker() as session:
        result = audit.verify(session)
    if result.first_break is None:
        print(f"audit chain OK: {result.rows} row(s)", file=out)
        return EXIT_OK
    broken = result.first_break
    print(f"audit chain BROKEN at row {broken.row_id}: {broken.reason}", file=out)
    return EXIT_REFUSED


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="default: STREETWATCH_DATABASE_URL, else the server's default")


def build_users_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streetwatch-central users", description="Manage login accounts.")
    sub = parser.add_subparsers(dest="action", required=True)
    roles = [role.value for role in Role]

    add = sub.add_parser("add", help="create an account (its password is temporary: changed at first login)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=roles)
    add.add_argument("--ward", action="append", help="a ward the user works in (repeat for several)")
    add.add_argument("--generate-password", action="store_true", help="make up a strong one and print it")
    add.set_defaults(run=_users_add)

    for name, run, text in (
        ("disable", _users_disable, "disable an account and end its sessions"),
        ("enable", _users_enable, "enable a disabled account"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("name")
        cmd.set_defaults(run=run)

    reset = sub.add_parser("reset-password", help="set a temporary password; ends the sessions")
    reset.add_argument("name")
    reset.add_argument("--generate-password", action="store_true", help="make up a strong one and print it")
    reset.set_defaults(run=_users_reset)

    wards = sub.add_parser("wards", help="set the wards of an account (no --ward: none)")
    wards.add_argument("name")
    wards.add_argument("--ward", action="append")
    wards.set_defaults(run=_users_wards)

    listing = sub.add_parser("list", help="every account with role, state and wards")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_users_list)
    for cmd in (add, reset, wards, listing, *(sub.choices[n] for n in ("disable", "enable"))):
        _common(cmd)
    return parser


def build_audit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streetwatch-central audit", description="The tamper-evident audit log."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    verify = sub.add_parser("verify", help="walk the hash chain; names the first broken row")
    _common(verify)
    verify.set_defaults(run=_audit_verify)
    return parser


def _run(parser: argparse.ArgumentParser, argv: Sequence[str], out: TextIO) -> int:
    args = parser.parse_args(list(argv))
    try:
        db = _database(args)
    except Exception as exc:  # a wrong URL, an unreachable server: one line, not a traceback
        print(f"streetwatch-central: cannot open the database: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args, db, out))
    except users.UserError as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        db.dispose()


def users_main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    return _run(build_users_parser(), argv, out)


def audit_main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    return _run(build_audit_parser(), argv, out)
