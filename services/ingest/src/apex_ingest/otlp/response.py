"""OTLP/HTTP answers in the request's own encoding: the ``ExportTraceServiceResponse``
(with ``partial_success`` only when spans were rejected) and, for a refused request,
a ``google.rpc.Status`` as the OTLP/HTTP specification asks."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

Encoding = Literal["protobuf", "json"]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# gRPC status codes, for the Status body (https://grpc.io codes: 3 invalid argument...)
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 422: 3, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}


def export_response(
    encoding: Encoding, rejected: int, error_message: str, extra: dict[str, Any]
) -> tuple[bytes, str]:
    """The body and content type of a 200 answer. JSON answers also carry Apex's own
    counts (``extra``); OTLP clients ignore fields they do not know."""
    if encoding == "protobuf":
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected, error_message=error_message)
            )
        return response.SerializeToString(), PROTOBUF
    partial = {"rejectedSpans": rejected, "errorMessage": error_message}
    return orjson.dumps({"partialSuccess": partial, **extra}), JSON


def error_response(encoding: Encoding, status: int, body: dict[str, Any]) -> tuple[bytes, str]:
    """A refused export: Apex's error body as JSON, or a Status message for protobuf."""
    if encoding == "protobuf":
        error = body.get("error") or {}
        message = f"{error.get('code', 'error')}: {error.get('message', '')}"
        return Status(code=_GRPC.get(status, 2), message=message).SerializeToString(), PROTOBUF
    return orjson.dumps(body), JSON
