"""Reading usage uploads (JSON, NDJSON, CSV) record by record from a byte stream, so an
upload of any size is never held in memory: good records come out as ``UsageRecord``,
bad ones as ``Rejected(line, reason)``.

Each line is decoded on its own, so bytes that are not UTF-8 reject their line, not the
upload. A JSON document is split into its records as it arrives (``JsonRecords``); its
"line" is the line the record starts on. CSV headers and JSON keys may use the common
export names (``timestamp``, ``input_tokens``, ``cache_creation_input_tokens``...,
``COLUMN_ALIASES``); CSV columns Apex does not know are ignored and named; a header
without the required columns refuses the whole upload."""

from __future__ import annotations

import csv
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from apex_contracts import InvalidInput
from apex_contracts.usage import USAGE_FIELDS, UsageRecord
from apex_ingest.jsonstream import JsonRecords

UNCACHED = "uncached_prompt_tokens"

REQUIRED_COLUMNS = ("ts", "provider", "model", "prompt_tokens", "completion_tokens")
# Names the big providers' exports use for Apex's fields (CSV headers and JSON keys).
COLUMN_ALIASES = {
    "timestamp": "ts",
    "time": "ts",
    "created_at": "ts",
    "start_time": "ts",
    "date": "ts",
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "usage_output_tokens": "completion_tokens",
    "cached_input_tokens": "cached_tokens",
    "cache_read_input_tokens": "cached_tokens",
    "input_cached_tokens": "cached_tokens",
    "cache_read_tokens": "cached_tokens",
    "usage_input_tokens_cache_read": "cached_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "cache_write_input_tokens": "cache_write_tokens",
    "cache_creation_tokens": "cache_write_tokens",
    "input_cache_write_tokens": "cache_write_tokens",
    "reasoning_output_tokens": "reasoning_tokens",
    "output_reasoning_tokens": "reasoning_tokens",
    "completion_reasoning_tokens": "reasoning_tokens",
    "thoughts_tokens": "reasoning_tokens",
    "tier": "service_tier",
    "duration_ms": "latency_ms",
    "latency": "latency_ms",
    "cost": "cost_usd",
    "app": "workload",
    "feature": "workload",
    "model_id": "model",
    # input without any cache tokens (Anthropic's export): prompt_tokens is made from it
    "uncached_input_tokens": UNCACHED,
    "input_tokens_no_cache": UNCACHED,
    "usage_input_tokens_no_cache": UNCACHED,
}
# Columns that are parts of one field (cache writes by cache lifetime): they are added.
SUMMED_COLUMNS = {
    "cache_creation_5m_input_tokens": "cache_write_tokens",
    "cache_creation_1h_input_tokens": "cache_write_tokens",
    "ephemeral_5m_input_tokens": "cache_write_tokens",
    "ephemeral_1h_input_tokens": "cache_write_tokens",
    "usage_input_tokens_cache_write_5m": "cache_write_tokens",
    "usage_input_tokens_cache_write_1h": "cache_write_tokens",
}
# The providers' words for a service tier; "auto" names no price, so it is dropped.
SERVICE_TIERS = {
    "default": "default",
    "standard": "default",
    "standard_only": "default",
    "on_demand": "default",
    "batch": "batch",
    "flex": "flex",
    "priority": "priority",
    "scale": "scale",
}
KNOWN_FIELDS = frozenset({*USAGE_FIELDS, UNCACHED})
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Rejected:
    line: int
    error: str


Row = UsageRecord | Rejected


@dataclass
class UploadInfo:
    """What the parser learned about the upload beyond its rows."""

    ignored_columns: list[str] = field(default_factory=list)


def detect_format(content_type: str, first_bytes: bytes) -> str:
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return "csv"
    if kind in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq"):
        return "ndjson"
    if kind == "application/json":
        return "json"
    head = first_bytes.removeprefix(_BOM).lstrip()[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "ndjson" if b"\n{" in first_bytes else "json"
    return "csv"


def field_of(name: str) -> str:
    """Apex's field for a column or key name (itself when it has no alias)."""
    key = name.strip().lower()
    return COLUMN_ALIASES.get(key) or SUMMED_COLUMNS.get(key) or key


@functools.lru_cache(maxsize=4096)
def _route(name: str) -> tuple[str | None, bool, bool]:
    """(Apex's field or None when unknown, the name is the field's own, the name is a part
    of a summed field) for a column or key name: the same few names come with every row."""
    key = name.strip().lower()
    if key in SUMMED_COLUMNS:
        return SUMMED_COLUMNS[key], False, True
    target = COLUMN_ALIASES.get(key, key)
    return (target, key == target, False) if target in KNOWN_FIELDS else (None, False, False)


@functools.lru_cache(maxsize=1024)
def _plain(names: tuple[str, ...]) -> bool:
    """Whether the names are Apex's own fields, each once, with nothing to resolve (no
    alias, no summed part, no uncached input, no service tier to translate)."""
    return len(set(names)) == len(names) and all(
        name in _PLAIN_FIELDS and _route(name) == (name, True, False) for name in names
    )


_PLAIN_FIELDS = frozenset(USAGE_FIELDS) - {"service_tier"}


def combine(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A record's fields from (name, value) pairs in any naming: aliases resolved, an
    exact field name winning over an alias, the parts of a summed field added (a total
    column wins over its parts), the service tier in Apex's words, and ``prompt_tokens``
    made from the uncached input plus the cache reads and writes when only the uncached
    count is given."""
    out: dict[str, Any] = {}
    parts: dict[str, Any] = {}
    exact: set[str] = set()
    for name, value in pairs:
        if value == "" or value is None:
            continue
        target, own_name, summed = _route(name)
        if target is None:
            continue
        if summed:
            parts[target] = _add(parts.get(target, 0), value)
            continue
        if target not in out or (own_name and target not in exact):
            out[target] = value
        if own_name:
            exact.add(target)
    return settle(out, parts)


def settle(out: dict[str, Any], parts: dict[str, Any]) -> dict[str, Any]:
    """``combine``'s last step: the summed parts where no total was given, the service
    tier in Apex's words, ``prompt_tokens`` from the uncached input."""
    for target, total in parts.items():
        out.setdefault(target, total)
    tier = out.get("service_tier")
    if isinstance(tier, str):
        word = tier.strip().lower()
        if word == "auto":
            del out["service_tier"]
        else:
            out["service_tier"] = SERVICE_TIERS.get(word, tier)
    uncached = out.pop(UNCACHED, None)
    if uncached is not None and "prompt_tokens" not in out:
        cache_io = _add(out.get("cached_tokens", 0), out.get("cache_write_tokens", 0))
        out["prompt_tokens"] = _add(uncached, cache_io)
    return out


def _add(a: Any, b: Any) -> Any:
    try:
        return int(a) + int(b)
    except (TypeError, ValueError, OverflowError):
        return a  # not (finite) numbers: the record's validation names the field


def validate_row(line: int, raw: Any) -> Row:
    if not isinstance(raw, dict):
        return Rejected(line, "a record is a JSON object")
    if "tenant_id" in raw:
        return Rejected(line, "tenant_id is not accepted in uploads: records belong to your tenant")
    if _plain(tuple(raw)):  # the common case: ``combine`` would only drop the empty values
        try:
            return UsageRecord.model_validate({k: v for k, v in raw.items() if v != "" and v is not None})
        except ValidationError as exc:
            return Rejected(line, reason_of(exc))
    return validate_pairs(line, list(raw.items()))


def validate_pairs(line: int, pairs: list[tuple[str, Any]]) -> Row:
    try:
        return UsageRecord.model_validate(combine(pairs))
    except ValidationError as exc:
        return Rejected(line, reason_of(exc))


def reason_of(exc: Exception) -> str:
    """A record's first problem as ``field: message`` (or the error itself)."""
    if not isinstance(exc, ValidationError):
        return repr(exc)
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


async def raw_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """(number, bytes) per line, the BOM dropped."""
    buffer = b""
    number = 0
    first = True
    async for chunk in chunks:
        buffer += chunk
        if first and len(buffer) >= 3:
            buffer, first = buffer.removeprefix(_BOM), False
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            number += 1
            yield number, raw
    if buffer:
        yield number + 1, buffer.removeprefix(_BOM) if first else buffer


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, str | None]]:
    """(number, text) per line; text is None for a line that is not UTF-8."""
    async for number, raw in raw_lines(chunks):
        yield number, _decode(raw)


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None


NOT_UTF8 = "not UTF-8 text"


async def parse_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    async for number, raw in raw_lines(chunks):
        try:
            parsed = orjson.loads(raw)  # the bytes as they came: orjson checks the UTF-8
        except orjson.JSONDecodeError:
            if (rejected := _not_json(number, raw)) is not None:
                yield rejected
            continue
        yield validate_row(number, parsed)


def _not_json(number: int, raw: bytes) -> Rejected | None:
    """Why a line that did not parse is rejected (None: a blank line, skipped)."""
    text = _decode(raw)
    if text is None:
        return Rejected(number, NOT_UTF8)
    if not text.strip():
        return None
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Rejected(number, f"not valid JSON: {exc.msg}")
    return Rejected(number, "not valid JSON")


def csv_header(values: list[str], info: UploadInfo) -> list[str | None]:
    """The column names to keep (None: ignored); refuses a header without the required
    columns (an uncached input column stands for ``prompt_tokens``)."""
    fields = [field_of(v) for v in values]
    present = set(fields) | ({"prompt_tokens"} if UNCACHED in fields else set())
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise InvalidInput(
            f"The CSV header lacks required columns: {', '.join(missing)}.",
            details={"missing_columns": missing, "required": list(REQUIRED_COLUMNS)},
        )
    info.ignored_columns = [v for v, f in zip(values, fields, strict=True) if f not in KNOWN_FIELDS]
    return [v if f in KNOWN_FIELDS else None for v, f in zip(values, fields, strict=True)]


async def parse_csv(chunks: AsyncIterator[bytes], info: UploadInfo | None = None) -> AsyncIterator[Row]:
    info = info or UploadInfo()
    header: list[str | None] | None = None
    pending = ""
    start = 0
    async for number, text in lines(chunks):
        if text is None:
            pending = ""
            yield Rejected(number, NOT_UTF8)
            continue
        if not pending and not text.strip():
            continue
        pending, start = (pending + "\n" + text, start) if pending else (text, number)
        if pending.count('"') % 2:
            continue  # a quoted field goes on on the next line
        values, pending = next(csv.reader([pending])), ""
        if header is None:
            header = csv_header(values, info)
            continue
        if len(values) != len(header):
            yield Rejected(start, f"expected {len(header)} columns, found {len(values)}")
            continue
        yield validate_pairs(
            start, [(name, value) for name, value in zip(header, values, strict=True) if name]
        )
    if pending:
        yield Rejected(start, "a quoted field is never closed")


async def parse_json(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    scanner = JsonRecords()
    async for chunk in chunks:
        for line, raw in scanner.feed(chunk):
            yield _json_row(line, raw)
    scanner.finish()


def _json_row(line: int, raw: bytes | dict[str, Any]) -> Row:
    try:
        return validate_row(line, raw if isinstance(raw, dict) else orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        return Rejected(line, f"not valid JSON: {exc.msg}")
    except UnicodeDecodeError:
        return Rejected(line, NOT_UTF8)
