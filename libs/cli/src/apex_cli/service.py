"""Container entry point: ``python -m apex_cli.service <service> [args]`` runs one service
(``gateway``, ``auth``, ``orchestrator``, ``agents``, ``tools``, ``persistence``, ``ingest``) or
``migrate`` (every migration, for the migration job)."""

from __future__ import annotations

import os
import subprocess
import sys

from apex_cli.config import START_ORDER


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*START_ORDER, "migrate"):
        print(f"usage: service {{{','.join(START_ORDER)},migrate}} [args]", file=sys.stderr)
        return 2
    if argv[0] == "migrate":
        for owner in ("auth", "persistence"):
            code = subprocess.call([sys.executable, "-m", f"apex_{owner}", "migrate"])
            if code:
                return code
        return 0
    os.execv(sys.executable, [sys.executable, "-m", f"apex_{argv[0]}", *argv[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
