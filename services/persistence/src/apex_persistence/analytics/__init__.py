"""ClickHouse analytics: the event stream and ``llm_usage``, on a server or embedded."""
