"""What an upload's records mean: good records come out as ``UsageRecord``, bad ones as
``Rejected(line, reason)`` (``readers.py`` reads them from the byte stream, so an upload
of any size is never held in memory).

CSV headers and JSON keys may use the common
export names (``timestamp``, ``input_tokens``, ``cache_creation_input_tokens``...,
``COLUMN_ALIASES``); CSV columns Apex does not know are ignored and named; a header
without the required columns refuses the whole upload."""

from __future__ import annotations

import functools
from codecs import BOM_UTF8
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from apex_contracts import InvalidInput
from apex_contracts.usage import USAGE_FIELDS, UsageRecord

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
    head = first_bytes.removeprefix(BOM_UTF8).lstrip()[:1]
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


Candidate = tuple[int, dict[str, Any]]  # a record's line and its fields in Apex's names
_RECORDS: TypeAdapter[list[UsageRecord]] = TypeAdapter(list[UsageRecord])


def candidate(line: int, raw: Any) -> Candidate | Rejected:
    """A decoded JSON record's fields in Apex's names, or why it is refused before that."""
    if not isinstance(raw, dict):
        return Rejected(line, "a record is a JSON object")
    if "tenant_id" in raw:
        return Rejected(line, "tenant_id is not accepted in uploads: records belong to your tenant")
    if _plain(tuple(raw)):  # the common case: ``combine`` would only drop the empty values
        return line, {k: v for k, v in raw.items() if v != "" and v is not None}
    return line, combine(list(raw.items()))


def validate_candidates(items: list[Candidate | Rejected]) -> list[Row]:
    """Each candidate as a ``UsageRecord`` or ``Rejected`` with its first problem, in
    order. The candidates are validated together (one call into pydantic for the lot);
    when some fail, those are validated one by one for their reasons and the rest
    together again."""
    out: list[Row] = []
    pending: list[tuple[int, Candidate]] = []  # (index in out, candidate)
    for item in items:
        if not isinstance(item, Rejected):
            pending.append((len(out), item))
        out.append(item if isinstance(item, Rejected) else _UNSET)
    try:
        records = _RECORDS.validate_python([fields for _, (_, fields) in pending])
    except ValidationError as exc:
        bad = {int(e["loc"][0]) for e in exc.errors(include_url=False, include_input=False) if e["loc"]}
        for n in bad:
            index, item = pending[n]
            out[index] = _one(item)
        pending = [p for n, p in enumerate(pending) if n not in bad]
        records = _RECORDS.validate_python([fields for _, (_, fields) in pending])
    for (index, _), record in zip(pending, records, strict=True):
        out[index] = record
    return out


_UNSET = Rejected(0, "")


def _one(item: Candidate) -> Row:
    line, fields = item
    try:
        return UsageRecord.model_validate(fields)
    except ValidationError as exc:
        return Rejected(line, reason_of(exc))


def validate_row(line: int, raw: Any) -> Row:
    item = candidate(line, raw)
    return item if isinstance(item, Rejected) else _one(item)


def validate_pairs(line: int, pairs: list[tuple[str, Any]]) -> Row:
    return _one((line, combine(pairs)))


def reason_of(exc: Exception) -> str:
    """A record's first problem as ``field: message`` (or the error itself)."""
    if not isinstance(exc, ValidationError):
        return repr(exc)
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


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
