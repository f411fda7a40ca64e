"""OTLP/HTTP trace exports (protobuf or JSON, gzip or not) whose spans follow the
OpenTelemetry GenAI semantic conventions, read as usage records.

``decode`` turns a request body into spans (``SpanData``), whatever its encoding;
``mapping`` reads a span's attributes into a usage record (or skips a span that is no
model call, or rejects one that is malformed); ``answer`` builds the OTLP response,
with the partial-success part when spans were rejected."""

from apex_ingest.otlp.decode import SpanData, decode_json, decode_protobuf, spans_of
from apex_ingest.otlp.mapping import record_fields, rows
from apex_ingest.otlp.response import Encoding, error_response, export_response

__all__ = [
    "Encoding",
    "SpanData",
    "decode_json",
    "decode_protobuf",
    "error_response",
    "export_response",
    "record_fields",
    "rows",
    "spans_of",
]
