"""The outbox's SQLite schema, versioned: messages, the evidence uploads they wait for, dead letters, drop counts.

Kept apart from ``outbox.py`` so the spool's layout can be read (and migrated) in one place.
"""

from typing import Final

SCHEMA_VERSION: Final = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    klass TEXT NOT NULL CHECK (klass IN ('violation', 'telemetry')),
    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL CHECK (qos IN (0, 1)),
    key TEXT, label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0, last_error TEXT,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS ix_messages_key ON messages (key, id);
CREATE INDEX IF NOT EXISTS ix_messages_acked ON messages (acked_at);
CREATE INDEX IF NOT EXISTS ix_messages_klass ON messages (klass, id);
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
"""
