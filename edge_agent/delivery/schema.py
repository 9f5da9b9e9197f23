"""The outbox's SQLite schema, versioned: messages, the evidence uploads they wait for, dead letters, drop counts.

Kept apart from ``outbox.py`` so the spool's layout can be read (and migrated) in one place.

Version 2 (end-to-end acknowledgement): ``acked_at`` is when the *broker* acknowledged a row, which no longer
removes it; ``digest`` is the ``message_digest`` of the bytes last published, by which central acknowledges the
row once committed (only then is it deleted); ``resends`` counts republishes because central stayed silent.
"""

from typing import Final

SCHEMA_VERSION: Final = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    klass TEXT NOT NULL CHECK (klass IN ('violation', 'telemetry')),
    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL CHECK (qos IN (0, 1)),
    key TEXT, label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, last_error TEXT,
    acked_at REAL, digest TEXT, published_at REAL, resends INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_messages_key ON messages (key, id);
CREATE INDEX IF NOT EXISTS ix_messages_acked ON messages (acked_at);
CREATE INDEX IF NOT EXISTS ix_messages_klass ON messages (klass, id);
CREATE INDEX IF NOT EXISTS ix_messages_digest ON messages (digest);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL, kind TEXT NOT NULL, content_type TEXT NOT NULL, size INTEGER NOT NULL,
    path TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, last_error TEXT
);
CREATE INDEX IF NOT EXISTS ix_uploads_message ON uploads (message_id);
CREATE INDEX IF NOT EXISTS ix_uploads_sha ON uploads (sha256);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL, what TEXT NOT NULL CHECK (what IN ('upload', 'message')),
    message_id INTEGER, sha256 TEXT, path TEXT, topic TEXT, payload BLOB,
    reason TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_dead_letters_message ON dead_letters (message_id);
CREATE TABLE IF NOT EXISTS drops (
    klass TEXT NOT NULL, reason TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (klass, reason)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""

# Applied to a version-1 spool before SCHEMA (which then only adds what is missing).
MIGRATE_FROM_1 = """
ALTER TABLE messages ADD COLUMN digest TEXT;
ALTER TABLE messages ADD COLUMN published_at REAL;
ALTER TABLE messages ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
"""
