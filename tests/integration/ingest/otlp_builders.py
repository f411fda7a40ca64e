"""OTLP trace exports built with the OpenTelemetry protobuf classes (the encoding the
SDK exporters send), and their JSON twin as OTLP/JSON writes it."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

START_NS = 1_767_607_200_000_000_000  # 2026-01-05T10:00:00Z


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def span(number: int, attributes: dict[str, Any], *, error: bool = False, duration_ms: int = 800) -> Span:
    start = START_NS + number * 1_000_000_000
    return Span(
        trace_id=bytes.fromhex(f"{number:032x}"),
        span_id=bytes.fromhex(f"{number:016x}"),
        name="chat",
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration_ms * 1_000_000,
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
        attributes=[KeyValue(key=k, value=_value(v)) for k, v in attributes.items()],
    )


def export(spans: list[Span], service: str = "checkout-assistant") -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [KeyValue(key="service.name", value=_value(service))]},
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )


def as_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON form: camelCase fields, ids in hex (not protobuf's base64)."""
    document = MessageToDict(request)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for item in scope.get("spans", []):
                for key in ("traceId", "spanId"):
                    if key in item:
                        import base64

                        item[key] = base64.b64decode(item[key]).hex()
    return document
