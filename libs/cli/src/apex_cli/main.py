"""The ``apex`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from apex_cli.config import Home


def _run_until_signal(coro_factory: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return int(await coro_factory(stop))

    return asyncio.run(runner())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apex", description="Run and use the Apex platform.")
    parser.add_argument("--home", help="state folder (default: ./.apex or APEX_HOME)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service, one process each; Ctrl-C stops them all")
    up.add_argument(
        "--nats-tls",
        action="store_true",
        help="the embedded NATS takes TLS clients only, with a development CA (APEX_NATS_TLS=1)",
    )
    sub.add_parser("doctor", help="check every dependency and say what is wrong")
    token = sub.add_parser("token", help="print a development access token")
    token.add_argument("--email", default="dev@example.com")
    token.add_argument("--password", default="apex-dev-password")
    token.add_argument("--tenant", default="Development")
    chat = sub.add_parser("chat", help="chat with Apex in the terminal")
    chat.add_argument("--email", default="dev@example.com")
    chat.add_argument("--password", default="apex-dev-password")
    chat.add_argument("--tenant", default="Development")
    chat.add_argument("message", nargs="*", help="send this message and exit when it is answered")
    demo = sub.add_parser("demo", help="demo data")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    seed = demo_sub.add_parser("seed", help="a demo tenant with 30 days of realistic usage")
    seed.add_argument("--email", default="demo@example.com")
    seed.add_argument("--password", default="apex-demo-password")
    seed.add_argument("--days", type=int, default=30)
    projections = sub.add_parser("projections", help="read models: status (position, lag) and rebuild")
    projections.add_argument("action", choices=["status", "rebuild"])
    projections.add_argument(
        "--store", choices=["postgres", "redis", "clickhouse"], help="one store (default: all)"
    )
    nats_auth = sub.add_parser("nats-auth", help="NATS credentials and TLS for docker compose and k8s/")
    nats_auth_sub = nats_auth.add_subparsers(dest="nats_auth_command", required=True)
    init = nats_auth_sub.add_parser(
        "init",
        help="make (or keep) the operator, accounts, a user per service, the server's auth block"
        " and, with --tls, a development CA and server certificate",
    )
    init.add_argument("--out", required=True, help="folder to write (kept across runs: keys are reused)")
    init.add_argument("--tls", action="store_true", help="also a development CA and server cert (tls/)")
    init.add_argument(
        "--tls-host",
        action="append",
        help="a name (or IP) of the server certificate; repeat; default: compose's and k8s/'s names",
    )
    init.add_argument(
        "--owner",
        help="UID:GID to give the services' .creds, issuer.json and system.creds (compose: 10001:10001; needs root)",
    )
    args = parser.parse_args(argv)
    home = Home.resolve(args.home)

    if args.command == "up":
        from apex_cli.up import run_up

        if args.nats_tls:
            os.environ["APEX_NATS_TLS"] = "1"
        return _run_until_signal(lambda stop: run_up(home, stop))
    if args.command == "doctor":
        from apex_cli.doctor import run_doctor

        return asyncio.run(run_doctor(home))
    if args.command in ("token", "chat"):
        from apex_cli.chat import run_chat, run_token

        if args.command == "token":
            return asyncio.run(run_token(home, args.email, args.password, args.tenant))
        return asyncio.run(run_chat(home, args.email, args.password, args.tenant, " ".join(args.message)))
    if args.command == "demo":
        from apex_cli.demo import run_seed

        return asyncio.run(run_seed(home, args.email, args.password, args.days))
    if args.command == "nats-auth":
        from apex_cli.natsauth import run_init

        return run_init(Path(args.out), tls=args.tls, hosts=args.tls_host, owner=args.owner)
    if args.command == "projections":
        # The service asked is the one `apex up` started: its URLs are in the home's env file.
        env = {**home.read_env(), **os.environ}
        os.execvpe(
            sys.executable,
            [
                sys.executable,
                "-m",
                "apex_persistence",
                "projections",
                args.action,
                *(["--store", args.store] if args.store else []),
            ],
            env,
        )
    return 2


def entrypoint() -> None:
    sys.exit(main())
