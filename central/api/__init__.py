"""HTTP layer: JSON API, evidence upload/download, server-rendered pages and health endpoints."""
