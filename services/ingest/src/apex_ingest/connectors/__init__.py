"""Usage straight from the providers: a tenant admin connects OpenAI (organisation usage
API) or Anthropic (admin usage report) once, with an admin key stored sealed; every
replica of ingest looks for due syncs, and a lease per connector lets one of them sync
it at a time. Each sync pulls the complete days since the last one, page by page, and
commits the records like an upload (same dedupe keys, same idempotency)."""
