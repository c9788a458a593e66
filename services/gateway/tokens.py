"""Tokens straight in the database, for a real installation's first admin token (and for when
no admin token is left).  Reads the DSN from the usual settings (NOOPS_DB_DSN).

    python -m services.gateway.tokens create --name admin --role admin [--apps 'payments-*'] [--expires-in-s N]
    python -m services.gateway.tokens list
    python -m services.gateway.tokens revoke --name NAME

``create`` prints the secret once, on stdout (nothing else is printed there)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone

from libs import db, settings
from libs.settings import CommonSettings
from services.gateway import tokenstore
from services.gateway.access import TOKEN_NAME_RE, Role, pattern_problem
from services.gateway.errors import ApiError

CLI_ACTOR = "cli"


async def _run(args: argparse.Namespace) -> int:
    common = settings.load(CommonSettings)
    pool = await db.connect_with(common, min_size=1, max_size=1)
    try:
        await db.migrate(pool)
        q = db.Queries("access")
        async with pool.acquire() as conn, conn.transaction():
            if args.command == "create":
                expires = (datetime.now(timezone.utc) + timedelta(seconds=args.expires_in_s)
                           if args.expires_in_s else None)
                made = await tokenstore.create(conn, q, name=args.name, role=Role[args.role], apps=args.apps,
                                               expires_at=expires, created_by=CLI_ACTOR)
                print(made["token"])
                print(f"token {args.name!r} ({args.role}) created; the secret above is not shown again",
                      file=sys.stderr)
            elif args.command == "revoke":
                if not await tokenstore.revoke(conn, q, args.name, by=CLI_ACTOR):
                    print(f"no live token named {args.name!r}", file=sys.stderr)
                    return 1
                print(f"token {args.name!r} revoked", file=sys.stderr)
            else:
                for r in await conn.fetch(q.list_tokens):
                    print(json.dumps(tokenstore.view(r)))
        return 0
    finally:
        await pool.close()


def _pattern(value: str) -> str:
    problem = pattern_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m services.gateway.tokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["create", "list", "revoke"])
    p.add_argument("--name", help="token name (create, revoke)")
    p.add_argument("--role", choices=[r.name for r in Role], default="admin", help="create: the role (admin)")
    p.add_argument("--apps", type=_pattern, help="create: limit to apps matching this glob, e.g. 'payments-*'")
    p.add_argument("--expires-in-s", type=int, help="create: expire this many seconds from now")
    args = p.parse_args(argv)
    if args.command in ("create", "revoke") and not args.name:
        p.error(f"{args.command} needs --name")
    if args.name and not TOKEN_NAME_RE.match(args.name):
        p.error("--name: lowercase letters, digits, '.', '_', '-'; at most 63, starting with a letter or digit")
    try:
        sys.exit(asyncio.run(_run(args)))
    except ApiError as exc:
        print(f"noops: {exc.error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
