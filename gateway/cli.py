"""The ``telepath`` command: serve, migrate, API keys, secret-key rotation."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.settings import (
    Settings,
    SettingsError,
    add_database_argument,
    add_serve_arguments,
    load_settings,
)

_SERVE_EPILOG = (
    "Every flag can also be set with the TELEPATH_* variable named in brackets; a flag wins. "
    "SIP is served on --sip (UDP and TCP) and --sip-tls (TLS, with --tls-cert/--tls-key); "
    "RTP uses --rtp-ports; --public-address is what SDP and Contact advertise (set it behind "
    "NAT); --sip-domain is the digest realm and the host of origination URIs."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telepath", description="Telepath: phone calls to AI voice agents."
    )
    parser.add_argument("--version", action="version", version=f"telepath {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway", epilog=_SERVE_EPILOG)
    add_serve_arguments(serve)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    add_database_argument(migrate)

    apikey = sub.add_parser("apikey", help="create, list and revoke API keys")
    keys = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = keys.add_parser("create", help="create a key; it is printed once, as the last line")
    create.add_argument("--name", required=True, help="a label for the key")
    create.add_argument(
        "--account", default="default", help="account name (created if new; default 'default')"
    )
    create.add_argument(
        "--scopes", default="read,write", help="comma-separated: read, write (default both)"
    )
    add_database_argument(create)
    listing = keys.add_parser("list", help="list keys (prefix, scopes, created, last used)")
    add_database_argument(listing)
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", help="the key's id (key_…)")
    add_database_argument(revoke)

    rotate = sub.add_parser(
        "rotate-secret-key",
        help="re-encrypt every stored provider secret under a new master key",
        description="With a key file (the embedded default) the new key is written to it. With "
        "TELEPATH_SECRET_KEY the new key is printed: set it in the environment before restarting.",
    )
    rotate.add_argument(
        "--new-key", default=None, help="the new key (32 bytes, base64); generated if omitted"
    )
    add_database_argument(rotate)
    return parser


async def _with_database(settings: Settings, migrate: bool = True) -> None:
    from gateway.database import open_database

    await open_database(settings.database_url, apply_migrations=migrate)


async def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.database import close_database
    from gateway.services.api_keys import ApiKeyService
    from gateway.services.errors import ServiceError

    await _with_database(settings)
    service = ApiKeyService()
    try:
        if args.apikey_command == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            created = await service.create(args.account, args.name, scopes)
            print(
                f"Created API key {created.key.id} ({', '.join(created.key.scopes)}) for account {args.account!r}."
            )
            print("Store it now; it will not be shown again:")
            print(created.secret)
        elif args.apikey_command == "list":
            print(
                f"{'ID':32} {'PREFIX':14} {'ACCOUNT':16} {'SCOPES':11} {'CREATED':20} {'LAST USED':20} STATUS"
            )
            for key in await service.list():
                print(
                    f"{key.id:32} {key.prefix + '…':14} {key.account.name[:16]:16} {','.join(key.scopes):11} "
                    f"{key.created_at:%Y-%m-%d %H:%M:%S}  "
                    f"{key.last_used_at.strftime('%Y-%m-%d %H:%M:%S') if key.last_used_at else '-':20} "
                    f"{'revoked' if key.revoked_at else 'active'}"
                )
        else:
            key = await service.revoke(args.id)
            print(f"Revoked {key.id}.")
    except ServiceError as exc:
        print(f"telepath: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await close_database()
    return 0


async def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.database import close_database
    from gateway.rotation import rotate_secret_key

    await _with_database(settings)
    try:
        message = await rotate_secret_key(settings, args.new_key)
    finally:
        await close_database()
    print(message)
    return 0


async def _migrate(settings: Settings) -> int:
    from gateway.database import migrate

    await migrate(settings.database_url)
    print("Database is up to date.")
    return 0


def _serve(settings: Settings) -> int:
    from gateway import native, runtime

    stale = native.stale()
    if stale:
        # An extension module shadows its source: running it would run the old code.
        print(
            "telepath: compiled modules do not match their sources: "
            f"{', '.join(stale)}. Rebuild them (scripts/compile.sh) or remove them "
            "(scripts/compile.sh --clean).",
            file=sys.stderr,
        )
        return 2
    try:
        loop = runtime.choose_event_loop(settings.event_loop)
    except runtime.EventLoopUnavailable as exc:
        print(f"telepath: {exc}", file=sys.stderr)
        return 2
    # Until run_server freezes the start-up heap (gateway.runtime), importing the server
    # and building the app only make objects that live as long as the process.
    runtime.pause_collector()
    from gateway.server import run_server

    runtime.serve_forever(loop, run_server(settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``telepath`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"telepath: {exc}", file=sys.stderr)
        return 2
    from gateway.logs import configure_logging
    from gateway.secret_box import SecretKeyError

    configure_logging(settings.log_level, json_lines=settings.log_json and args.command == "serve")
    try:
        if args.command == "serve":
            return _serve(settings)
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "apikey":
            return asyncio.run(_apikey(args, settings))
        return asyncio.run(_rotate(args, settings))
    except SecretKeyError as exc:
        print(f"telepath: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
