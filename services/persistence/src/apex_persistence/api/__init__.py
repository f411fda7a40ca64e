"""What persistence serves on the bus: the read API and the usage ingest consumer."""
