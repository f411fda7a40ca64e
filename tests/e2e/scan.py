"""Every store of a stopped ``apex up`` platform, searched for strings: the embedded
servers are started again on their data folders (new ports), and each store is read
whole: every row of every table of every Postgres schema, every Redis key and value,
every message (subject, headers, payload) of every JetStream stream (the key-value
buckets included), every row of every ClickHouse table (read by a child process: the
embedded engine is one per process)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import nats
import orjson
import redis.asyncio as aioredis

from apex_cli.embedded import nats_server, valkey_server
from apex_cli.embedded_postgres import postgres_server
from apex_cli.natsauth import ADMIN, NatsAuth

_CLICKHOUSE_DUMP = """
import json, sys
import chdb
conn = chdb.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("SELECT database, name FROM system.tables WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') AND engine NOT IN ('View', 'MaterializedView')")
for database, table in cur.fetchall():
    cur.execute(f"SELECT * FROM `{database}`.`{table}`")
    columns = [c[0] for c in cur.description]
    for row in cur.fetchall():
        print(json.dumps({"table": f"{database}.{table}", "row": dict(zip(columns, map(str, row)))}))
"""


@dataclass
class Scan:
    """Where each needle was found (store and place, with the text found) and how much was read."""

    hits: dict[str, list[str]] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)

    def look(self, place: str, text: str, needles: dict[str, str]) -> None:
        for name, needle in needles.items():
            if needle in text:
                self.hits.setdefault(name, []).append(f"{place}: {text}")


async def scan_platform(apex_home: Path, needles: dict[str, str]) -> Scan:
    scan = Scan()
    pg = postgres_server(apex_home / "postgres").start()
    valkey = valkey_server(apex_home / "redis").start()
    # the platform's own bus configuration: its streams live in the APEX account
    auth = NatsAuth.ensure(apex_home / "nats-auth")
    bus = nats_server(apex_home / "nats", auth=auth).start()
    try:
        await _postgres(pg.url, needles, scan)
        await _redis(valkey.url, needles, scan)
        await _streams(bus.url, str(auth.creds_path(ADMIN)), needles, scan)
        await asyncio.to_thread(_clickhouse, apex_home / "chdb", needles, scan)
    finally:
        for server in (bus, valkey, pg):
            server.stop()
    return scan


async def _postgres(dsn: str, needles: dict[str, str], scan: Scan) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        for table in tables:
            name = f'"{table["schemaname"]}"."{table["tablename"]}"'
            rows = await conn.fetch(f"SELECT x::text AS row FROM {name} x")
            scan.read[f"postgres {table['schemaname']}.{table['tablename']}"] = len(rows)
            for row in rows:
                scan.look(f"postgres {name}", row["row"], needles)
    finally:
        await conn.close()


async def _redis(url: str, needles: dict[str, str], scan: Scan) -> None:
    client = aioredis.from_url(url)
    try:
        keys = await client.keys("*")
        scan.read["redis keys"] = len(keys)
        for key in keys:
            kind = await client.type(key)
            value: object
            if kind == b"hash":
                value = await client.hgetall(key)
            elif kind == b"zset":
                value = await client.zrange(key, 0, -1)
            elif kind == b"set":
                value = await client.smembers(key)
            elif kind == b"list":
                value = await client.lrange(key, 0, -1)
            else:
                value = await client.get(key)
            scan.look("redis", f"{key.decode()} = {value!r}", needles)
    finally:
        await client.aclose()


async def _streams(url: str, creds: str, needles: dict[str, str], scan: Scan) -> None:
    nc = await nats.connect(url, user_credentials=creds)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name
            count = 0
            for subjects in info.config.subjects or []:  # ">" alone would skip "$KV..." subjects
                read = _read_stream if info.config.allow_direct else _read_stream_from_leader
                count += await read(nc, name, subjects, needles, scan)
            scan.read[f"stream {name}"] = count
    finally:
        await nc.close()


def _clickhouse(path: Path, needles: dict[str, str], scan: Scan) -> None:
    dump = subprocess.run(
        [sys.executable, "-c", _CLICKHOUSE_DUMP, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    for line in dump.stdout.splitlines():
        item = json.loads(line)
        scan.read[f"clickhouse {item['table']}"] = scan.read.get(f"clickhouse {item['table']}", 0) + 1
        scan.look(f"clickhouse {item['table']}", json.dumps(item["row"]), needles)


async def _read_stream(nc: nats.NATS, stream: str, subjects: str, needles: dict[str, str], scan: Scan) -> int:
    count, seq = 0, 1
    while seq:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        request = {"seq": seq, "next_by_subj": subjects, "batch": 500}
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
        last = 0
        while True:
            msg = await sub.next_msg(timeout=10)
            headers = msg.headers or {}
            if headers.get("Status"):
                break
            last = int(headers["Nats-Sequence"])
            count += 1
            text = f"{headers.get('Nats-Subject')} {headers} {msg.data.decode(errors='replace')}"
            scan.look(f"stream {stream}", text, needles)
        await sub.unsubscribe()
        seq = last + 1 if last else 0
    return count


async def _read_stream_from_leader(
    nc: nats.NATS, stream: str, subjects: str, needles: dict[str, str], scan: Scan
) -> int:
    """A stream without direct gets (key-value buckets): one message at a time."""
    count, seq = 0, 1
    while True:
        answer = await nc.request(
            f"$JS.API.STREAM.MSG.GET.{stream}",
            orjson.dumps({"seq": seq, "next_by_subj": subjects}),
            timeout=10,
        )
        body = orjson.loads(answer.data)
        message = body.get("message")
        if message is None:
            return count
        count += 1
        data = base64.b64decode(message.get("data") or b"").decode(errors="replace")
        headers = base64.b64decode(message.get("hdrs") or b"").decode(errors="replace")
        scan.look(f"stream {stream}", f"{message['subject']} {headers} {data}", needles)
        seq = int(message["seq"]) + 1
