"""Reading usage uploads (JSON, NDJSON, CSV) record by record from a byte stream, so an
upload of any size is never held in memory: good records come out as ``UsageRecord``,
bad ones as ``Rejected(line, reason)``.

Each line is decoded on its own, so bytes that are not UTF-8 reject their line, not the
upload. A JSON document is split into its records as it arrives (``JsonRecords``); its
"line" is the line the record starts on. A CSV header may use the common export names
(``timestamp``, ``input_tokens``...); columns Apex does not know are ignored and named;
a header without the required columns refuses the whole upload."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from apex_contracts import InvalidInput
from apex_contracts.usage import USAGE_FIELDS, UsageRecord

REQUIRED_COLUMNS = ("ts", "provider", "model", "prompt_tokens", "completion_tokens")
# Names the big providers' exports use for Apex's fields.
COLUMN_ALIASES = {
    "timestamp": "ts",
    "time": "ts",
    "created_at": "ts",
    "start_time": "ts",
    "date": "ts",
    "input_tokens": "prompt_tokens",
    "output_tokens": "completion_tokens",
    "cached_input_tokens": "cached_tokens",
    "cache_read_input_tokens": "cached_tokens",
    "input_cached_tokens": "cached_tokens",
    "duration_ms": "latency_ms",
    "latency": "latency_ms",
    "cost": "cost_usd",
    "app": "workload",
    "feature": "workload",
    "model_id": "model",
}
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


def validate_row(line: int, raw: Any) -> Row:
    if not isinstance(raw, dict):
        return Rejected(line, "a record is a JSON object")
    if "tenant_id" in raw:
        return Rejected(line, "tenant_id is not accepted in uploads: records belong to your tenant")
    try:
        record = UsageRecord.model_validate(
            {k: v for k, v in raw.items() if k in USAGE_FIELDS and v not in ("", None)}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        return Rejected(line, f"{where}: {first['msg']}")
    return record


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, str | None]]:
    """(number, text) per line; text is None for a line that is not UTF-8."""
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
            yield number, _decode(raw)
    if buffer:
        yield number + 1, _decode(buffer.removeprefix(_BOM) if first else buffer)


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None


NOT_UTF8 = "not UTF-8 text"


async def parse_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    async for number, text in lines(chunks):
        if text is None:
            yield Rejected(number, NOT_UTF8)
            continue
        if not text.strip():
            continue
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Rejected(number, f"not valid JSON: {exc.msg}")
            continue
        yield validate_row(number, raw)


def csv_header(values: list[str], info: UploadInfo) -> list[str | None]:
    """Apex's field for each column (None: ignored); refuses a header without the required columns."""
    names = [COLUMN_ALIASES.get(v.strip().lower(), v.strip().lower()) for v in values]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InvalidInput(
            f"The CSV header lacks required columns: {', '.join(missing)}.",
            details={"missing_columns": missing, "required": list(REQUIRED_COLUMNS)},
        )
    info.ignored_columns = [v for v, n in zip(values, names, strict=True) if n not in USAGE_FIELDS]
    return [n if n in USAGE_FIELDS else None for n in names]


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
        yield validate_row(start, {name: value for name, value in zip(header, values, strict=True) if name})
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


_OUTSIDE = re.compile(rb'[\[\]{}",\n]')
_INSIDE = re.compile(rb'["\\\n]')


class JsonRecords:
    """Splits a JSON document, ``[...]`` or ``{"records": [...]}``, into the bytes of
    each record as the document arrives; keeps only the unfinished record in memory."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._line = 1
        self._stack: list[bytes] = []
        self._in_string = False
        self._string_start = 0
        self._last_key = b""
        self._items_depth: int | None = None
        self._item_start: int | None = None
        self._item_line = 1
        self._done = False
        self._started = False
        self._boundary: int | None = None  # where a scalar record would start
        self._after_item = False

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | dict[str, Any]]]:
        if not self._started:
            chunk = chunk.removeprefix(_BOM)
            self._started = True
        self._buf += chunk
        yield from self._scan()
        keep = self._item_start if self._item_start is not None else self._pos
        if self._in_string and self._item_start is None:
            keep = min(keep, self._string_start)
        if self._boundary is not None:
            keep = min(keep, self._boundary)
        self._buf = self._buf[keep:]
        self._pos -= keep
        self._string_start -= keep
        if self._item_start is not None:
            self._item_start -= keep
        if self._boundary is not None:
            self._boundary -= keep

    def finish(self) -> None:
        if not self._done:
            raise InvalidInput(
                'The JSON upload ended before its records did (an array of records, or {"records": [...]}).'
            )

    def _scan(self) -> Iterator[tuple[int, bytes | dict[str, Any]]]:
        buf = self._buf
        while True:
            pattern = _INSIDE if self._in_string else _OUTSIDE
            match = pattern.search(buf, self._pos)
            if match is None:
                self._pos = len(buf)
                return
            i = match.start()
            ch = buf[i : i + 1]
            self._pos = i + 1
            if ch == b"\n":
                self._line += 1
            elif self._in_string:
                if ch == b"\\":
                    if i + 1 >= len(buf):
                        self._pos = i  # the escaped byte has not arrived yet
                        return
                    self._pos = i + 2
                else:
                    self._in_string = False
                    if len(self._stack) == 1 and self._stack[0] == b"{":
                        self._last_key = buf[self._string_start + 1 : i]
            else:
                yield from self._structural(ch, i)

    def _structural(self, ch: bytes, i: int) -> Iterator[tuple[int, bytes | dict[str, Any]]]:
        if self._done:
            if ch not in (b"]", b"}"):
                raise InvalidInput("The JSON upload has content after its records.")
            return
        depth = len(self._stack)
        at_items = self._items_depth is not None and depth == self._items_depth
        if ch == b'"':
            self._in_string, self._string_start = True, i
            if at_items and self._item_start is None:
                self._begin_item(i)
        elif ch in (b"[", b"{"):
            if at_items and self._item_start is None:
                if ch == b"{" and (whole := self._whole_object(i)) is not None:
                    self._after_item = True
                    yield whole
                    return
                self._begin_item(i)
            self._stack.append(ch)
            if self._items_depth is None:
                self._find_items(ch)
                if self._items_depth is not None:
                    self._boundary = i + 1
        elif ch in (b"]", b"}"):
            if not self._stack:
                raise InvalidInput("The JSON upload is not valid JSON.")
            self._stack.pop()
            if (
                self._items_depth is not None
                and len(self._stack) == self._items_depth
                and self._item_start is not None
            ):
                self._after_item = True
                yield self._item_line, self._buf[self._item_start : i + 1]
                self._item_start = None
            elif self._items_depth is not None and len(self._stack) == self._items_depth - 1:
                yield from self._scalar(i)
                self._done = True
        elif ch == b"," and at_items:
            yield from self._scalar(i)

    def _whole_object(self, i: int) -> tuple[int, dict[str, Any]] | None:
        """The record starting at ``i`` when it is complete in the buffer: an object is
        prefix-free, so the first ``}`` after which the bytes parse is its end."""
        end = self._buf.find(b"}", i)
        while end != -1 and end - i < 1_000_000:
            try:
                value = orjson.loads(self._buf[i : end + 1])
            except orjson.JSONDecodeError:
                end = self._buf.find(b"}", end + 1)
                continue
            line = self._line
            self._line += self._buf.count(b"\n", i, end + 1)
            self._pos = end + 1
            return line, value
        return None

    def _begin_item(self, i: int) -> None:
        self._item_start, self._item_line = i, self._line

    def _find_items(self, ch: bytes) -> None:
        if self._stack == [b"["]:
            self._items_depth = 1
        elif self._stack == [b"{", b"["] and self._last_key == b"records":
            self._items_depth = 2
        elif len(self._stack) == 1 and ch == b"{":
            return
        elif len(self._stack) == 1:
            raise InvalidInput('A JSON upload is an array of records or {"records": [...]}.')

    def _scalar(self, i: int) -> Iterator[tuple[int, bytes | dict[str, Any]]]:
        """At the end of a record (a ``,`` or the closing ``]``): a record that is not an
        object or array (``1``, ``"x"``) is yielded, to be rejected by its line."""
        if self._item_start is not None:
            self._after_item = True
            yield self._item_line, self._buf[self._item_start : i]
            self._item_start = None
        elif not self._after_item and self._boundary is not None:
            text = self._buf[self._boundary : i].strip()
            if text:
                yield self._line, text
        self._after_item = False
        self._boundary = i + 1
