"""Apex ingest."""
