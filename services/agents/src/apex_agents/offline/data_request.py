"""The precise data request the data helper writes when the tenant's data cannot answer."""

from __future__ import annotations

from apex_contracts.report import DataRequest, ExportHowTo, Intent, Period
from apex_contracts.usage import USAGE_FIELDS

REQUIRED = ["ts", "provider", "model", "prompt_tokens", "completion_tokens"]
EXPORTS = [
    ExportHowTo(
        provider="OpenAI",
        steps="Organization usage API (GET /v1/organization/usage/completions, bucket_width=1d, "
        "group_by=model) or your request logs; map input_tokens->prompt_tokens, "
        "output_tokens->completion_tokens, input_cached_tokens->cached_tokens.",
    ),
    ExportHowTo(
        provider="Anthropic",
        steps="Admin API usage report (GET /v1/organizations/usage_report/messages, group_by=model) "
        "or Console > Usage > Export; map input_tokens->prompt_tokens, output_tokens->"
        "completion_tokens, cache_read_input_tokens->cached_tokens.",
    ),
    ExportHowTo(
        provider="Azure OpenAI",
        steps="Enable diagnostic settings on the resource (RequestResponse logs to Log Analytics), "
        "export the AzureDiagnostics rows as CSV with the token counts and DurationMs as latency_ms.",
    ),
    ExportHowTo(
        provider="AWS Bedrock",
        steps="Turn on model invocation logging (CloudWatch Logs or S3) and export inputTokenCount, "
        "outputTokenCount, modelId and the invocation latency as NDJSON.",
    ),
    ExportHowTo(
        provider="Google Vertex AI",
        steps="Route aiplatform request-response logs to BigQuery and export usageMetadata "
        "(promptTokenCount, candidatesTokenCount, cachedContentTokenCount) with the model and timestamp.",
    ),
    ExportHowTo(
        provider="OpenTelemetry",
        steps="If you trace LLM calls with the GenAI semantic conventions, send the spans to "
        "POST /api/v1/usage/otlp (OTLP/HTTP JSON): model, token usage and duration are read from them.",
    ),
]
FORMATS = [
    "CSV with a header row: " + ",".join(USAGE_FIELDS),
    "NDJSON: one JSON object per line with those fields",
    'JSON: an array of those objects, or {"records": [...]}',
]


def data_request(intent: Intent, period: Period, missing: list[str], have_rows: bool) -> DataRequest:
    """What to upload: the fields (all required ones when there is no data), the period
    (the question's, else the last month), how to export it, in which formats."""
    lacking = [f for f in missing if f != "ts" or not have_rows]
    fields = list(dict.fromkeys((REQUIRED if not have_rows else []) + lacking))
    if not have_rows:
        reason = "There is no usage data for this period yet."
    elif lacking:
        reason = "The usage data lacks fields this question needs: " + ", ".join(lacking) + "."
    else:
        reason = "The usage data is too short for this question."
    if intent == "forecast" and ("ts" in missing or not have_rows):
        reason += " A forecast needs at least two weeks of daily data; a month or more is better."
        fields = list(dict.fromkeys([*fields, "ts"]))
    wanted = period if period.start or period.end else Period()
    return DataRequest(reason=reason, fields=fields, period=wanted, how_to_export=EXPORTS, formats=FORMATS)
