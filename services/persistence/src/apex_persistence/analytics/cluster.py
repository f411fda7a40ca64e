"""The same DDL on a replicated ClickHouse cluster (``APEX_CLICKHOUSE_CLUSTER``).

On one server the tables are ``ReplacingMergeTree``. On a cluster every schema
statement runs ``ON CLUSTER`` (so each replica gets it) and each table is a
``ReplicatedReplacingMergeTree`` whose Keeper path is the table's UUID and the shard
(``/clickhouse/tables/{uuid}/{shard}``, ClickHouse's own default): it follows the table
through a rebuild's ``EXCHANGE TABLES``, which a path built from the database and table
names would not. Inserts and ``ALTER ... DELETE`` mutations replicate by themselves and
are left as they are."""

from __future__ import annotations

import re
from typing import Final

REPLICA_ARGS: Final = "'/clickhouse/tables/{uuid}/{shard}', '{replica}'"
_IDENT = r"[\w$.]+"
_ON_CLUSTER_AFTER_NAME: Final = (
    re.compile(rf"^(\s*CREATE DATABASE IF NOT EXISTS {_IDENT})", re.IGNORECASE),
    re.compile(rf"^(\s*DROP DATABASE IF EXISTS {_IDENT})", re.IGNORECASE),
    re.compile(rf"^(\s*CREATE TABLE IF NOT EXISTS {_IDENT})", re.IGNORECASE),
    re.compile(rf"^(\s*ALTER TABLE {_IDENT})(?=\s+(?:ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN)", re.IGNORECASE),
    re.compile(rf"^(\s*EXCHANGE TABLES {_IDENT} AND {_IDENT})", re.IGNORECASE),
)
_ENGINE = re.compile(r"ENGINE\s*=\s*ReplacingMergeTree(?:\(([^)]*)\))?")


def _replicated_engine(match: re.Match[str]) -> str:
    version = (match.group(1) or "").strip()
    return f"ENGINE = ReplicatedReplacingMergeTree({REPLICA_ARGS}{', ' + version if version else ''})"


def clustered(sql: str, cluster: str | None) -> str:
    """``sql`` as it must run on ``cluster`` (unchanged when there is none)."""
    if not cluster:
        return sql
    for pattern in _ON_CLUSTER_AFTER_NAME:
        if pattern.search(sql):
            sql = pattern.sub(lambda m: f"{m.group(1)} ON CLUSTER '{cluster}'", sql, count=1)
            break
    return _ENGINE.sub(_replicated_engine, sql)
