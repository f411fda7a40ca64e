"""``python -m apex_persistence`` serves; ``migrate [--down REVISION]`` migrates Postgres (and
the ClickHouse DDL) and exits; ``projections status [--store S]`` shows checkpoints and lag;
``projections rebuild [--store S]`` has the running service rebuild views from the log."""

from __future__ import annotations

import argparse
import asyncio
import sys

from apex_runtime import run_process

STORE_CHOICES = ("postgres", "redis", "clickhouse", "audit")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m apex_persistence")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the projectors and the read API (default)")
    migrate = commands.add_parser("migrate", help="apply schema migrations and exit")
    migrate.add_argument("--down", metavar="REVISION", help="downgrade Postgres to REVISION (e.g. base)")
    wait = commands.add_parser(
        "wait-schema", help="wait until Postgres and ClickHouse are at this release's schema (init container)"
    )
    wait.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")
    projections = commands.add_parser("projections", help="read models: status, rebuild")
    projections.add_argument("action", choices=["status", "rebuild"])
    projections.add_argument("--store", choices=STORE_CHOICES, help="one store (default: all)")
    return parser.parse_args()


def cli() -> int:
    args = _parse()
    from apex_persistence.bootstrap import main, run_migrations
    from apex_persistence.rebuild.client import projections_rebuild
    from apex_persistence.settings import PersistenceSettings
    from apex_persistence.status import projections_status

    if args.command == "migrate":
        asyncio.run(run_migrations(PersistenceSettings(), down=args.down))
        return 0
    if args.command == "wait-schema":
        from apex_persistence.bootstrap import wait_for_schema

        return 0 if asyncio.run(wait_for_schema(PersistenceSettings(), args.timeout)) else 3
    if args.command == "projections":
        if args.action == "rebuild":
            if args.store == "audit":
                print("the audit log is not a view of the event log: it cannot be rebuilt", file=sys.stderr)  # noqa: T201
                return 2
            return asyncio.run(projections_rebuild(PersistenceSettings(), args.store))
        return asyncio.run(projections_status(PersistenceSettings(), args.store))
    run_process(main)
    return 0


sys.exit(cli())
