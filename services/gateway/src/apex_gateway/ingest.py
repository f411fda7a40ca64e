"""Reading usage uploads (JSON, NDJSON, CSV) row by row from a byte stream, so a large
upload is never held in memory: good rows come out as ``UsageRecord``, bad ones as
(line, reason)."""

from __future__ import annotations

import codecs
import csv
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from apex_contracts import InvalidInput
from apex_contracts.usage import USAGE_FIELDS, UsageRecord


@dataclass(frozen=True)
class Rejected:
    line: int
    error: str


Row = UsageRecord | Rejected


def detect_format(content_type: str, first_bytes: bytes) -> str:
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return "csv"
    if kind in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq"):
        return "ndjson"
    if kind == "application/json":
        return "json"
    head = first_bytes.lstrip()[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "ndjson" if b"\n{" in first_bytes else "json"
    return "csv"


def validate_row(line: int, raw: Any) -> Row:
    if not isinstance(raw, dict):
        return Rejected(line, "a record is a JSON object")
    if "tenant_id" in raw:
        return Rejected(line, "tenant_id is not accepted in uploads: records belong to your tenant")
    try:
        record = UsageRecord.model_validate({k: v for k, v in raw.items() if k in USAGE_FIELDS and v not in ("", None)})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return Rejected(line, f"{where}: {first['msg']}")
    return record


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    buffer = ""
    number = 0
    async for chunk in chunks:
        try:
            buffer += decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"The upload is not UTF-8 text (near line {number + buffer.count(chr(10)) + 1})."
            ) from exc
        *complete, buffer = buffer.split("\n")
        for text in complete:
            number += 1
            yield number, text
    buffer += decoder.decode(b"", final=True)
    if buffer:
        yield number + 1, buffer


async def parse_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    async for number, text in _lines(chunks):
        if not text.strip():
            continue
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Rejected(number, f"not valid JSON: {exc.msg}")
            continue
        yield validate_row(number, raw)


async def parse_csv(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    header: list[str] | None = None
    async for number, text in _lines(chunks):
        if not text.strip():
            continue
        values = next(csv.reader([text.rstrip("\r")]))
        if header is None:
            header = [h.strip().lower() for h in values]
            missing = {"ts", "provider", "model", "prompt_tokens", "completion_tokens"} - set(header)
            if missing:
                raise InvalidInput(f"The CSV header lacks required columns: {', '.join(sorted(missing))}.")
            continue
        if len(values) != len(header):
            yield Rejected(number, f"expected {len(header)} columns, found {len(values)}")
            continue
        yield validate_row(number, dict(zip(header, values, strict=True)))


async def parse_json(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[Row]:
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise InvalidInput("A JSON document upload is limited; send large uploads as NDJSON or CSV.")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"The upload is not valid JSON: {exc.msg}.") from exc
    records = document.get("records") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise InvalidInput('A JSON upload is an array of records or {"records": [...]}.')
    for index, raw in enumerate(records, start=1):
        yield validate_row(index, raw)
