"""An ``ExportTraceServiceRequest`` as spans, from its protobuf or its JSON encoding.

Both encodings come out the same: a span's attributes and its resource's attributes as
plain dicts (strings, ints, floats, bools; arrays as lists), its times in nanoseconds,
its status code (0 unset, 1 ok, 2 error) and its trace and span ids in hex (OTLP/JSON
writes ids as hex, protobuf as bytes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_JSON_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


@dataclass(frozen=True, slots=True)
class SpanData:
    number: int  # 1-based position in the export, to name a rejected span
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start_ns: int
    end_ns: int
    status_code: int
    trace_id: str
    span_id: str


# --- protobuf ----------------------------------------------------------------------


def decode_protobuf(body: bytes) -> Iterator[SpanData]:
    """Raises ValueError at once when the body is not an ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP protobuf trace export ({exc})") from exc
    return _pb_spans(request)


def _pb_spans(request: ExportTraceServiceRequest) -> Iterator[SpanData]:
    number = 0
    for resource_spans in request.resource_spans:
        resource = {kv.key: _pb_value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                number += 1
                yield SpanData(
                    number,
                    {kv.key: _pb_value(kv.value) for kv in span.attributes},
                    resource,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                    span.trace_id.hex(),
                    span.span_id.hex(),
                )


def _pb_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


# --- JSON --------------------------------------------------------------------------


def decode_json(document: Any) -> Iterator[SpanData]:
    """Raises ValueError at once when the document is not ``{"resourceSpans": [...]}``; a
    span of the wrong shape comes out with an ``apex.malformed`` attribute (rejected)."""
    if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
        raise ValueError('an OTLP trace export is {"resourceSpans": [...]}')
    return _json_spans(document)


def _json_spans(document: dict[str, Any]) -> Iterator[SpanData]:
    number = 0
    for resource_spans in document["resourceSpans"]:
        resource = json_attributes(((resource_spans or {}).get("resource") or {}).get("attributes"))
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                number += 1
                yield _json_span(number, span, resource)


def _json_span(number: int, span: Any, resource: dict[str, Any]) -> SpanData:
    if not isinstance(span, dict):
        return SpanData(number, {"apex.malformed": "a span is a JSON object"}, resource, 0, 0, 0, "", "")
    try:
        status = (span.get("status") or {}).get("code", 0)
        return SpanData(
            number,
            json_attributes(span.get("attributes")),
            resource,
            int(span.get("startTimeUnixNano") or 0),
            int(span.get("endTimeUnixNano") or 0),
            _JSON_STATUS.get(status, 0) if isinstance(status, str) else int(status),
            str(span.get("traceId") or ""),
            str(span.get("spanId") or ""),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        return SpanData(number, {"apex.malformed": f"malformed span: {exc}"}, resource, 0, 0, 0, "", "")


def json_attributes(items: Any) -> dict[str, Any]:
    """OTLP/JSON ``[{key, value: {stringValue|intValue|...}}]`` as a dict."""
    out: dict[str, Any] = {}
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            out[item["key"]] = _json_value(item.get("value"))
    return out


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        try:
            return int(value["intValue"])  # int64 is a decimal string in OTLP/JSON
        except (TypeError, ValueError):
            return value["intValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "arrayValue" in value:
        return [_json_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return json_attributes((value["kvlistValue"] or {}).get("values"))
    return None


def spans_of(body: bytes, *, protobuf: bool) -> Iterator[SpanData]:
    """The spans of a (decompressed) body in the given encoding."""
    if protobuf:
        return decode_protobuf(body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from exc
    return decode_json(document)
