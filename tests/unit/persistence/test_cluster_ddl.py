"""On a replicated ClickHouse cluster every schema statement runs ON CLUSTER and every
table is replicated; on one server the DDL is unchanged."""

from __future__ import annotations

from apex_persistence.analytics.cluster import REPLICA_ARGS, clustered
from apex_persistence.analytics.ddl import _BOOTSTRAP, VERSIONS

STATEMENTS = [*_BOOTSTRAP, *(statement for _, statements in VERSIONS for statement in statements)]


def test_one_server_runs_the_ddl_as_written() -> None:
    assert [clustered(s, None) for s in STATEMENTS] == STATEMENTS


def test_every_schema_statement_runs_on_the_cluster_with_replicated_tables() -> None:
    for statement in STATEMENTS:
        on_cluster = clustered(statement, "apex")
        assert "ON CLUSTER 'apex'" in on_cluster, statement
        if "ENGINE" in statement:
            assert "ENGINE = ReplicatedReplacingMergeTree(" + REPLICA_ARGS in on_cluster
            assert " ReplacingMergeTree" not in on_cluster
    assert clustered(
        "CREATE TABLE IF NOT EXISTS $db.t (v UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY v", "c"
    ).endswith(f"ENGINE = ReplicatedReplacingMergeTree({REPLICA_ARGS}, v) ORDER BY v")


def test_a_rebuild_swap_and_a_mutation() -> None:
    assert clustered("EXCHANGE TABLES $db.events AND apex_rebuild.events", "c").endswith("ON CLUSTER 'c'")
    assert clustered("DROP DATABASE IF EXISTS $db", "c").endswith("ON CLUSTER 'c'")
    # a mutation on a replicated table replicates by itself: left as it is
    assert clustered("ALTER TABLE $db.events DELETE WHERE tenant_id = 'x'", "c") == (
        "ALTER TABLE $db.events DELETE WHERE tenant_id = 'x'"
    )
