"""Database layer: ORM models, engine/session factory and programmatic migrations."""
