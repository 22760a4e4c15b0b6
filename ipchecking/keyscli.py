"""``python -m ipchecking keys``: create, list and revoke API keys.

    python -m ipchecking keys create --name NAME --scope bouncer|read|report|admin
    python -m ipchecking keys list
    python -m ipchecking keys revoke NAME

Keys go to the mode's store (the state directory, or Redis when
``REDIS_URL`` is set), so this works while the service runs and every API
process accepts or refuses the key within a second or two, without a
restart. ``create`` prints the key once, alone on standard output; only its
SHA-256 digest is stored. Each change is in the audit log as done by
``cli``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

from blocklist.control import SCOPES, ApiKey, Conflict, new_key
from blocklist.controlstores import control_store
from blocklist.errors import ConfigError
from blocklist.history import iso_moment
from blocklist.redisclient import RedisConnector
from blocklist.settings import Settings, load_settings
from ipchecking.auth import CONFIGURED, key_digest

ACTOR = "cli"
#: Actors the audit log names that are not stored keys.
RESERVED = frozenset({ACTOR, CONFIGURED, "service"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")


def keys_main(argv: list[str]) -> int:
    """Run one ``keys`` command; the exit code (2: bad usage or settings, 1: refused)."""
    parser = argparse.ArgumentParser(prog="python -m ipchecking keys", description="Manage API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print it once")
    create.add_argument("--name", required=True, help="unique name, shown in the audit log")
    create.add_argument("--scope", required=True, choices=SCOPES)
    commands.add_parser("list", help="name, scope and creation of every stored key (as JSON lines)")
    revoke = commands.add_parser("revoke", help="stop accepting a key")
    revoke.add_argument("name")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "create" and not _NAME.match(args.name):
        print("a key name is 1-63 letters, digits, _ . @ -, starting with a letter or digit", file=sys.stderr)
        return 2
    if args.command == "create" and args.name in RESERVED:
        print(f"{args.name!r} names the service itself in the audit log; choose another", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    connector = None if settings.embedded else RedisConnector(settings)
    store = control_store(settings, connector)
    try:
        if args.command == "create":
            secret = new_key()
            record = ApiKey(args.name, args.scope, key_digest(secret), time.time(), ACTOR)
            try:
                await store.create_key(record, ACTOR)
            except Conflict as exc:
                print(str(exc), file=sys.stderr)
                return 1
            await store.settle()
            print(secret)
            return 0
        if args.command == "list":
            for record in await store.list_keys():
                line = {
                    "name": record.name,
                    "scope": record.scope,
                    "created_at": iso_moment(record.created_at),
                    "created_by": record.created_by,
                }
                print(json.dumps(line))
            return 0
        if not await store.revoke_key(args.name, ACTOR, time.time()):
            print(f"no key named {args.name!r}", file=sys.stderr)
            return 1
        await store.settle()
        return 0
    finally:
        await store.aclose()
        if connector is not None:
            await connector.aclose()
