"""Request bodies as they arrive: ``Content-Encoding: gzip`` undone on the fly, and a
limit on the bytes after decompression (a small gzip can hold a huge body)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable

from apex_contracts import ErrorCode, InvalidInput

TooLarge = Callable[[], InvalidInput]


def encoding_of(header: str | None) -> str:
    """``identity`` or ``gzip``; anything else is refused."""
    value = (header or "identity").strip().lower()
    if value in ("", "identity"):
        return "identity"
    if value in ("gzip", "x-gzip"):
        return "gzip"
    raise InvalidInput(
        f"Content-Encoding {value!r} is not supported; send gzip or no encoding.",
        code=ErrorCode.INVALID_REQUEST,
    )


async def decoded(
    chunks: AsyncIterator[bytes], encoding: str, limit: int, too_large: TooLarge
) -> AsyncIterator[bytes]:
    """The body's bytes, decompressed when gzip; raises ``too_large()`` past ``limit``."""
    inflater = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
    total = 0
    async for chunk in chunks:
        if inflater is None:
            out = chunk
        else:
            try:
                out = inflater.decompress(chunk, limit + 1 - total)
            except zlib.error as exc:
                raise InvalidInput(f"The body is not valid gzip: {exc}.") from exc
            if inflater.unconsumed_tail:
                raise too_large()
        total += len(out)
        if total > limit:
            raise too_large()
        if out:
            yield out
    if inflater is not None and not inflater.eof:
        raise InvalidInput("The gzip body ended before its end.")


async def read_all(chunks: AsyncIterator[bytes], encoding: str, limit: int, too_large: TooLarge) -> bytes:
    parts = [part async for part in decoded(chunks, encoding, limit, too_large)]
    return b"".join(parts)
