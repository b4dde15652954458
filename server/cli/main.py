"""Command line: serve, migrate, create-api-key, organizations, environments, api-keys, events load,
demo, service-config, query convert."""

from __future__ import annotations

import argparse
import asyncio
import logging
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

# The contract of `events load` for scripts (README, "Loading events", says the same).
LOAD_EXIT_CODES = """exit codes:
  0  every row of the file was loaded (or was already stored)
  1  some rows were rejected (each named by its line above); the others were loaded
  2  an error stopped the load, or no row was valid: an unusable file, a refused or unreachable
     server, an event store in use by another process... One line on standard error says
     which, and what was stored before it (a server stream that broke off keeps its
     acknowledged batches: loading the file again stores the rest, each event once)"""


def _settings_flags(
    parser: argparse.ArgumentParser, listen_help: str = "host:port to serve on (INSIGHTS_LISTEN)"
) -> None:
    parser.add_argument("--listen", metavar="HOST:PORT", help=listen_help)
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
        description="Loads a JSON Lines or CSV file of events: through the server answering at --listen "
        "(or --server) when there is one, else straight into the event store of --events-dsn.",
        epilog=LOAD_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _settings_flags(
        load,
        listen_help="host:port of the server to load through (INSIGHTS_LISTEN, default 127.0.0.1:50051): "
        "a server answering there takes the events; with none there the file goes straight into "
        "--events-dsn, which an embedded (chdb://) store only allows while no server holds it",
    )
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
    config = commands.add_parser(
        "service-config",
        help="print the gRPC service config (retries of idempotent calls, default deadlines) that "
        "clients pass as the grpc.service_config channel option",
    )
    config.add_argument("--compact", action="store_true", help="on one line, as the channel option takes it")
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
    if args.command == "service-config":
        print(transport.service_config() if args.compact else transport.SERVICE_CONFIG_PATH.read_text().rstrip())
        return 0
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
            return _load(settings, args)
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


def _load(settings: Settings, args: argparse.Namespace) -> int:
    """`events load`, whose exit codes are a contract (LOAD_EXIT_CODES): an unexpected failure is
    one line and 2, never a traceback's 1, which would read as "some rows were rejected"."""
    from server.cli.loader import TransportError, run_load

    try:
        return run_load(
            settings,
            args.file,
            args.environment,
            args.batch_size,
            args.api_key,
            transport.ClientTransport.from_args(args),
            args.server,
        )
    except (DomainError, TransportError):
        raise  # main() words these
    except Exception as exc:  # see the docstring; DEBUG logs the traceback
        logging.getLogger("insights.cli").debug("events load failed", exc_info=True)
        print(
            f"error: {type(exc).__name__}: {exc}; nothing more was loaded (--log-level DEBUG shows where)",
            file=sys.stderr,
        )
        return 2


async def serve_main(settings: Settings) -> int:
    from server.app import serve

    return await serve(settings)


if __name__ == "__main__":
    raise SystemExit(main())
