"""Reading an upload (NDJSON, CSV, JSON) from its byte stream in blocks of at most
``BLOCK_ROWS`` rows: each block's records are validated together (``parsing.
validate_candidates``) and handed over as one list, so a row costs no coroutine step of
its own. Each ``parse_*`` gives the same rows one at a time.

Each line is decoded on its own, so bytes that are not UTF-8 reject their line, not the
upload. A JSON document is split into its records as it arrives (``JsonRecords``); its
"line" is the line the record starts on."""

from __future__ import annotations

import csv
from codecs import BOM_UTF8
from collections.abc import AsyncIterator
from typing import Any

import orjson

from apex_ingest.jsonstream import JsonRecords
from apex_ingest.parsing import (
    Candidate,
    Rejected,
    Row,
    UploadInfo,
    candidate,
    combine,
    csv_header,
    validate_candidates,
)

# Rows validated and handed over together: enough to pay pydantic's entry once for many,
# few enough that the batch being committed meanwhile gets the event loop every few ms.
BLOCK_ROWS = 500
NOT_UTF8 = "not UTF-8 text"
Lines = list[tuple[int, bytes]]
Items = list[Candidate | Rejected]


async def raw_line_blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[Lines]:
    """(number, bytes) of each line, the BOM dropped, in blocks of at most ``BLOCK_ROWS``."""
    buffer = b""
    number = 0
    first = True
    async for chunk in chunks:
        buffer += chunk
        if first and len(buffer) >= 3:
            buffer, first = buffer.removeprefix(BOM_UTF8), False
        *complete, buffer = buffer.split(b"\n")
        for at in range(0, len(complete), BLOCK_ROWS):
            part = complete[at : at + BLOCK_ROWS]
            yield list(enumerate(part, number + 1))
            number += len(part)
    if buffer:
        yield [(number + 1, buffer.removeprefix(BOM_UTF8) if first else buffer)]


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None


async def ndjson_blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Row]]:
    async for block in raw_line_blocks(chunks):
        items: Items = []
        for number, raw in block:
            try:
                parsed = orjson.loads(raw)  # the bytes as they came: orjson checks the UTF-8
            except orjson.JSONDecodeError:
                if (rejected := _not_json(number, raw)) is not None:
                    items.append(rejected)
                continue
            items.append(candidate(number, parsed))
        yield validate_candidates(items)


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


class _CsvLines:
    """CSV records from numbered lines: a quoted field may go on over several lines; the
    first record is the header."""

    def __init__(self, info: UploadInfo) -> None:
        self.info = info
        self.header: list[str | None] | None = None
        self.pending = ""
        self.start = 0

    def feed(self, block: Lines) -> Items:
        items: Items = []
        for number, raw in block:
            text = _decode(raw)
            if text is None:
                self.pending = ""
                items.append(Rejected(number, NOT_UTF8))
                continue
            if not self.pending and not text.strip():
                continue
            if self.pending:
                self.pending += "\n" + text
            else:
                self.pending, self.start = text, number
            if self.pending.count('"') % 2:
                continue  # a quoted field goes on on the next line
            values, self.pending = next(csv.reader([self.pending])), ""
            if (item := self._record(values)) is not None:
                items.append(item)
        return items

    def _record(self, values: list[str]) -> Candidate | Rejected | None:
        if self.header is None:
            self.header = csv_header(values, self.info)
            return None
        if len(values) != len(self.header):
            return Rejected(self.start, f"expected {len(self.header)} columns, found {len(values)}")
        return self.start, combine([(n, v) for n, v in zip(self.header, values, strict=True) if n])


async def csv_blocks(
    chunks: AsyncIterator[bytes], info: UploadInfo | None = None
) -> AsyncIterator[list[Row]]:
    reader = _CsvLines(info or UploadInfo())
    async for block in raw_line_blocks(chunks):
        if items := reader.feed(block):
            yield validate_candidates(items)
    if reader.pending:
        yield [Rejected(reader.start, "a quoted field is never closed")]


async def json_blocks(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Row]]:
    scanner = JsonRecords()
    async for chunk in chunks:
        items = [_json_item(line, raw) for line, raw in scanner.feed(chunk)]
        for at in range(0, len(items), BLOCK_ROWS):
            yield validate_candidates(items[at : at + BLOCK_ROWS])
    scanner.finish()


def _json_item(line: int, raw: bytes | dict[str, Any]) -> Candidate | Rejected:
    try:
        return candidate(line, raw if isinstance(raw, dict) else orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        return Rejected(line, f"not valid JSON: {exc.msg}")
    except UnicodeDecodeError:
        return Rejected(line, NOT_UTF8)


def blocks_of(kind: str, chunks: AsyncIterator[bytes], info: UploadInfo) -> AsyncIterator[list[Row]]:
    """The reader of an upload's format (``detect_format``'s name)."""
    if kind == "csv":
        return csv_blocks(chunks, info)
    return ndjson_blocks(chunks) if kind == "ndjson" else json_blocks(chunks)


async def _rows(blocks: AsyncIterator[list[Row]]) -> AsyncIterator[Row]:
    async for block in blocks:
        for row in block:
            yield row


def parse_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    return _rows(ndjson_blocks(chunks))


def parse_csv(chunks: AsyncIterator[bytes], info: UploadInfo | None = None) -> AsyncIterator[Row]:
    return _rows(csv_blocks(chunks, info))


def parse_json(chunks: AsyncIterator[bytes]) -> AsyncIterator[Row]:
    return _rows(json_blocks(chunks))
