"""``python -m apex_auth [serve | migrate [--down REV] | wait-schema [--timeout S] | rotate-keys]``"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from apex_auth.bootstrap import rotate_keys, serve, setup_logging
from apex_auth.db import STORE_FAILURES
from apex_auth.migrate import migrate, schema_ready
from apex_auth.settings import AuthSettings
from apex_contracts import ApexError
from apex_runtime import run_process
from apex_runtime.schema import wait_until_ready

log = logging.getLogger("apex_auth")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m apex_auth", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP service (the default)")
    migrate_cmd = commands.add_parser("migrate", help="upgrade the auth schema to head")
    migrate_cmd.add_argument(
        "--down", metavar="REVISION", help="downgrade to REVISION instead (base = drop all)"
    )
    wait = commands.add_parser(
        "wait-schema", help="wait until the auth schema is at this release's head (init container)"
    )
    wait.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")
    commands.add_parser("rotate-keys", help="activate a new signing key")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = AuthSettings()
    setup_logging(settings)
    try:
        if args.command == "migrate":
            if args.down:
                asyncio.run(migrate(settings.postgres_dsn, args.down, down=True))
            else:
                asyncio.run(migrate(settings.postgres_dsn))
            log.info("auth schema migrated")
        elif args.command == "wait-schema":
            ready = asyncio.run(
                wait_until_ready(
                    lambda: schema_ready(settings.postgres_dsn),
                    "auth schema",
                    timeout_s=args.timeout,
                    failures=STORE_FAILURES,
                )
            )
            return 0 if ready else 3
        elif args.command == "rotate-keys":
            kid = asyncio.run(rotate_keys(settings))
            log.info("new signing key %s is active", kid)
        else:
            run_process(lambda stop: serve(settings, stop))
    except ApexError as exc:
        log.error("%s: %s", exc.code, exc.message)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
