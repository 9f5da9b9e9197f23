"""Stage last, delivery: ``Event``s and evidence files -> durable outbox -> central.

``items`` holds the value types and small policies (message classes, drops, backoff); ``outbox`` the SQLite
spool; ``uploader`` sends evidence over HTTP; ``session`` is the MQTT session (persistent, announced, Last Will);
``publisher`` runs the threads that drain the outbox; ``heartbeat`` builds the periodic health message.
"""
