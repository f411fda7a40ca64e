"""A NATS client no library wrote: the raw protocol, for what a library would hide."""

from __future__ import annotations

import asyncio


async def anonymous_connect(host: str, port: int) -> bytes:
    """The server's first answer to a CONNECT without credentials (and a PING)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5.0)).strip()
    finally:
        writer.close()
        await writer.wait_closed()
