"""Command line: serve, migrate, create-api-key, organizations, environments, api-keys, events load,
demo, query convert."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from server import logformat, transport
from server.cli import admin
from server.config import Settings
from server.errors import DomainError
from server.logformat import FORMATS
from storage.migrate import upgrade


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", help="host:port to serve on (INSIGHTS_LISTEN)")
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL of the metadata database (INSIGHTS_DATABASE_URL)"
    )
    parser.add_argument("--events-dsn", help="chdb://PATH or http(s)://host:port (INSIGHTS_EVENTS_DSN)")
    parser.add_argument("--grace-seconds", type=float, help="shutdown grace period (INSIGHTS_GRACE_SECONDS)")
    parser.add_argument("--workers", type=int, help="threads for blocking calls (INSIGHTS_WORKERS)")
    parser.add_argument("--log-level", help="logging level (INSIGHTS_LOG_LEVEL)")
    parser.add_argument(
        "--log-format", choices=FORMATS, help="text lines, or one JSON object per line (INSIGHTS_LOG_FORMAT)"
    )


def _tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="PEM certificate chain to serve TLS with (INSIGHTS_TLS_CERT)")
    parser.add_argument("--tls-key", help="its PEM private key (INSIGHTS_TLS_KEY)")
    parser.add_argument(
        "--tls-client-ca",
        help="PEM CAs whose client certificates are required: mutual TLS (INSIGHTS_TLS_CLIENT_CA)",
    )
    parser.add_argument(
        "--allow-plaintext",
        action="store_true",
        default=None,
        help="serve plaintext on a non-loopback address, behind a TLS proxy (INSIGHTS_ALLOW_PLAINTEXT)",
    )
    parser.add_argument(
        "--metrics-listen", help="host:port (or a port, on loopback) of GET /metrics (INSIGHTS_METRICS_LISTEN)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        listen=args.listen,
        database_url=args.database_url,
        events_dsn=args.events_dsn,
        grace_seconds=args.grace_seconds,
        workers=args.workers,
        log_level=args.log_level,
        log_format=args.log_format,
        # Only `serve` has these flags.
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        allow_plaintext=getattr(args, "allow_plaintext", None),
        metrics_listen=getattr(args, "metrics_listen", None),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description="The Insights gRPC service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve gRPC until SIGTERM/SIGINT")
    _settings_flags(serve)
    _tls_flags(serve)
    _settings_flags(commands.add_parser("migrate", help="bring the metadata database schema up to date"))
    key = commands.add_parser(
        "create-api-key",
        help="create a personal API key (with no owner named, bootstraps an organization, environment "
        "and user when none exist)",
    )
    _settings_flags(key)
    key.add_argument(
        "--scopes",
        nargs="+",
        required=True,
        help="scopes such as insight:read insight:write, or '*' (comma-separated also works)",
    )
    key.add_argument(
        "--environment",
        type=int,
        action="append",
        default=None,
        help="limit the key to this environment id (repeatable)",
    )
    key.add_argument("--label", default="", help="a label to recognise the key by")
    admin.add_key_owner_flags(key)
    admin.json_flag(key)
    admin.add_commands(commands, _settings_flags)
    events = commands.add_parser("events", help="event store commands").add_subparsers(
        dest="events_command", required=True
    )
    load = events.add_parser(
        "load",
        help="load a JSON Lines or CSV file of events (through IngestEventBatches when a server answers)",
    )
    _settings_flags(load)
    load.add_argument("file", type=Path, help=".jsonl/.ndjson/.json (one object per line) or .csv")
    load.add_argument("--environment", type=int, help="environment id (default: the first one)")
    load.add_argument(
        "--batch-size", type=int, default=10_000, help="events per insert and per acknowledged batch (default 10000)"
    )
    load.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="load through the server there (needs --environment); default: the one at --listen, if any",
    )
    _api_key_flag(load)
    transport.add_arguments(load)
    demo = commands.add_parser("demo", help="generate the deterministic demo dataset and insights")
    _settings_flags(demo)
    demo.add_argument("--events", type=int, default=1_000_000, help="number of events (default 1000000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (same seed and day, same data)")
    demo.add_argument("--environment", type=int, help="environment id (default: the demo environment)")
    demo.add_argument(
        "--if-empty", action="store_true", help="do nothing when the environment already has events"
    )
    _api_key_flag(demo)
    query = commands.add_parser("query", help="query node tools").add_subparsers(
        dest="query_command", required=True
    )
    convert = query.add_parser(
        "convert", help="convert a query between the reference JSON and protobuf JSON (for grpcurl)"
    )
    convert.add_argument("file", help="a JSON file, or - for standard input")
    convert.add_argument(
        "--to",
        choices=["proto", "reference"],
        default="proto",
        help="proto: reference JSON in, protobuf JSON out (default); reference: the other way",
    )
    return parser


def _convert_query(args: argparse.Namespace) -> int:
    from server.queries.common.codec import CodecError
    from server.queries.common.convert import convert

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        print(convert(text, args.to))
    except CodecError as exc:
        print(f"error: {exc}", file=sys.stderr)  # the message starts with the failing path
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _api_key_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("INSIGHTS_API_KEY", ""),
        help="key with event:write, used when a server answers at --listen (INSIGHTS_API_KEY)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "query":
        # Pure conversion: needs no settings, database or event store.
        return _convert_query(args)
    try:
        settings = _settings(args)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    # Redaction is installed here, before anything can log a key, a token or a password.
    logformat.configure(settings.log_level, settings.log_format)
    from server.cli.loader import TransportError

    try:
        if args.command == "serve":
            return asyncio.run(serve_main(settings))
        if args.command == "migrate":
            upgrade(settings.database_url)
            print(f"migrated {settings.database_url}")
            return 0
        if args.command == "create-api-key":
            upgrade(settings.database_url)
            return admin.create_api_key(settings, args)
        if args.command in ("organizations", "environments", "api-keys"):
            upgrade(settings.database_url)
            return admin.run(settings, args)
        if args.command == "events" and args.events_command == "load":
            from server.cli.loader import run_load

            return run_load(
                settings,
                args.file,
                args.environment,
                args.batch_size,
                args.api_key,
                transport.ClientTransport.from_args(args),
                args.server,
            )
        if args.command == "demo":
            from server.cli.demo import run_demo

            return run_demo(settings, args.events, args.seed, args.environment, args.if_empty, args.api_key)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return admin.exit_code(exc)
    except TransportError as exc:
        # Something listens at the address but does not speak our transport (demo looks too).
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


async def serve_main(settings: Settings) -> int:
    from server.app import serve

    return await serve(settings)


if __name__ == "__main__":
    raise SystemExit(main())
