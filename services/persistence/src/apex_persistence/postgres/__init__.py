"""The Postgres history: threads, messages, runs, the event archive and the audit log."""
