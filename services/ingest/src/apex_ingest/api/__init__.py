"""The HTTP API of the ingest service."""
