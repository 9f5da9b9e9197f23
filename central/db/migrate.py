"""Run Alembic migrations from code, at startup, without an ``alembic.ini`` on disk.

Central upgrades its own schema before it serves anything, so an operator never has to remember a separate
migration step; the migration scripts ship inside the package (``central/migrations``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from central.db.session import make_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic ``Config`` built in code; the URL travels in ``attributes`` (no ``%`` escaping issues)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str | None:
    """The newest revision shipped in the package."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None for an empty database)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` up to ``revision``; a no-op when it is already there."""
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    log.info("database schema at revision %s", current_revision(database_url))


def main(argv: list[str] | None = None) -> int:
    """``python -m central.db.migrate``: upgrade/show the schema, or autogenerate a new revision (developers).

    The database URL comes from ``STREETWATCH_DATABASE_URL`` (default: central's default SQLite file).
    """
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m central.db.migrate", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", help="upgrade the database to the newest revision")
    sub.add_parser("current", help="print the database's revision")
    revision = sub.add_parser("revision", help="autogenerate a revision from the models (review it!)")
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    url = os.environ.get("STREETWATCH_DATABASE_URL", "sqlite:///var/central/streetwatch.db")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "upgrade":
        upgrade(url)
    elif args.command == "current":
        print(current_revision(url) or "(empty database)")
    else:
        config = alembic_config(url)
        engine = make_engine(url)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.revision(config, message=args.message, autogenerate=True)
        finally:
            engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
