"""Alembic migrations of central's database; run programmatically by ``central.db.migrate``."""
