"""Splitting a JSON upload, ``[...]`` or ``{"records": [...]}``, into its records as the
bytes arrive, keeping only the unfinished record in memory."""

from __future__ import annotations

import re
from codecs import BOM_UTF8
from collections.abc import Iterator
from typing import Any

import orjson

from apex_contracts import InvalidInput

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
            chunk = chunk.removeprefix(BOM_UTF8)
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
