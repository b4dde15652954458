"""Operator commands: organizations, environments and API keys from the command line (text for
people, --json for scripts). Never prints a key's secret or hash, except a new key once."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from server.config import Settings
from server.domain import accounts
from server.errors import NotFound
from storage.db import Database

WEEK_STARTS = {"sunday": 0, "monday": 1}
Flags = Callable[[argparse.ArgumentParser], None]


def add_commands(commands: Any, settings_flags: Flags) -> None:
    """The `organizations`, `environments` and `api-keys` command groups."""
    organizations = commands.add_parser("organizations", help="create and list organizations")
    orgs = organizations.add_subparsers(dest="admin_command", required=True)
    create = orgs.add_parser("create", help="create an organization")
    create.add_argument("name", help="its name (1-400 characters)")
    list_orgs = orgs.add_parser("list", help="list organizations with their environment and member counts")

    environments = commands.add_parser("environments", help="create and list environments")
    envs = environments.add_subparsers(dest="admin_command", required=True)
    create_env = envs.add_parser("create", help="create an environment in an organization")
    create_env.add_argument("name", help="its name (1-400 characters)")
    create_env.add_argument("--organization", type=int, required=True, help="the organization id")
    create_env.add_argument("--timezone", default="UTC", help="IANA time zone of its dates (default UTC)")
    create_env.add_argument(
        "--week-start", choices=sorted(WEEK_STARTS), default="sunday", help="first day of its weeks"
    )
    list_envs = envs.add_parser("list", help="list environments")
    list_envs.add_argument("--organization", type=int, help="only this organization's")

    keys = commands.add_parser("api-keys", help="list and revoke personal API keys")
    key_commands = keys.add_subparsers(dest="admin_command", required=True)
    list_keys = key_commands.add_parser(
        "list", help="list keys: id, label, mask, user, scopes, environments, created, last used, revoked"
    )
    list_keys.add_argument("--user", type=int, help="only this user's keys")
    list_keys.add_argument("--organization", type=int, help="only keys of this organization's members")
    list_keys.add_argument("--active", action="store_true", help="hide revoked keys")
    revoke = key_commands.add_parser(
        "revoke",
        help="revoke a key by id (the row stays); a running server refuses it after INSIGHTS_AUTH_CACHE_SECONDS",
    )
    revoke.add_argument("id", type=int, help="the key id, as `api-keys list` shows it")
    for parser in (create, list_orgs, create_env, list_envs, list_keys, revoke):
        settings_flags(parser)
        json_flag(parser)


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")


def add_key_owner_flags(parser: argparse.ArgumentParser) -> None:
    """create-api-key's choice of owner (see accounts.key_owner)."""
    parser.add_argument("--user", type=int, help="the id of the user who owns the key")
    parser.add_argument(
        "--email",
        help="the owner by email: created when unknown, and made a member of --organization",
    )
    parser.add_argument(
        "--organization",
        type=int,
        help="the owner's organization (without --user/--email: its first member owns the key)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Runs an `organizations`, `environments` or `api-keys` command; DomainErrors propagate."""
    db = Database(settings.database_url)
    try:
        handler = _HANDLERS[(args.command, args.admin_command)]
        return handler(db, args)
    finally:
        db.close()


def create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    """`create-api-key`: prints the new key once, with a call to try it."""
    scopes = [s for part in args.scopes for s in part.split(",") if s]
    environments = list(args.environment) if args.environment else None
    db = Database(settings.database_url)
    try:
        user_id = accounts.key_owner(
            db,
            user_id=args.user,
            email=args.email,
            organization_id=args.organization,
            environment_ids=environments,
        )
        key_id, raw = accounts.create_api_key(db, user_id, scopes, environments, args.label)
        env = accounts.first_environment(db, user_id, environments)
        info = accounts.list_api_keys(db, key_id=key_id)[0]
    finally:
        db.close()
    if args.json:
        _print_json({"key": raw, **_key_record(info)})
        return 0
    print(f"API key (shown once, store it now): {raw}")
    print(f"Scopes: {' '.join(info.scopes)}   Environment: {env if env is not None else 'none'}")
    print(f"Key id: {key_id}   User: {user_id} ({info.user_email})")
    if env is not None:
        transport = (
            "-cacert CA.pem" if settings.tls else "-plaintext"
        ) + (" -cert CLIENT.pem -key CLIENT.key" if settings.tls_client_ca else "")
        print("Try it:")
        print(
            f"  .venv/bin/grpcurl {transport} -H 'authorization: Bearer {raw}' "
            f"-d '{{\"environment_id\": {env}}}' {settings.listen} insights.v1.InsightsService/ListInsights"
        )
    return 0


def exit_code(error: Exception) -> int:
    """3 for an id that does not exist, 2 for any other refused input."""
    return 3 if isinstance(error, NotFound) else 2


# ---------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------


def _create_organization(db: Database, args: argparse.Namespace) -> int:
    org_id = accounts.create_organization(db, args.name)
    found = next(o for o in accounts.list_organizations(db) if o.id == org_id)
    if args.json:
        _print_json(_record(found))
    else:
        print(f"organization {org_id} created: {found.name}")
    return 0


def _list_organizations(db: Database, args: argparse.Namespace) -> int:
    found = accounts.list_organizations(db)
    if args.json:
        _print_json([_record(o) for o in found])
        return 0
    _print_table(
        ["ID", "NAME", "ENVIRONMENTS", "MEMBERS", "CREATED"],
        [[o.id, o.name, o.environments, o.members, _when(o.created_at)] for o in found],
    )
    return 0


def _create_environment(db: Database, args: argparse.Namespace) -> int:
    env_id = accounts.create_environment(
        db, args.organization, args.name, timezone=args.timezone, week_start_day=WEEK_STARTS[args.week_start]
    )
    found = next(e for e in accounts.list_environments(db, args.organization) if e.id == env_id)
    if args.json:
        _print_json(_record(found))
    else:
        print(
            f"environment {env_id} created in organization {found.organization_id}: {found.name} "
            f"({found.timezone}, weeks start on {args.week_start})"
        )
    return 0


def _list_environments(db: Database, args: argparse.Namespace) -> int:
    found = accounts.list_environments(db, args.organization)
    if args.json:
        _print_json([_record(e) for e in found])
        return 0
    _print_table(
        ["ID", "ORGANIZATION", "NAME", "TIMEZONE", "WEEK STARTS", "CREATED"],
        [
            [
                e.id,
                f"{e.organization_id} {e.organization_name}",
                e.name,
                e.timezone,
                "monday" if e.week_start_day == 1 else "sunday",
                _when(e.created_at),
            ]
            for e in found
        ],
    )
    return 0


def _list_api_keys(db: Database, args: argparse.Namespace) -> int:
    found = accounts.list_api_keys(
        db, user_id=args.user, organization_id=args.organization, active_only=args.active
    )
    if args.json:
        _print_json([_key_record(k) for k in found])
        return 0
    _print_table(
        ["ID", "LABEL", "MASK", "USER", "SCOPES", "ENVIRONMENTS", "CREATED", "LAST USED", "REVOKED"],
        [
            [
                k.id,
                k.label,
                k.mask,
                f"{k.user_id} {k.user_email}",
                ",".join(k.scopes),
                ",".join(map(str, k.environments)) if k.environments else "all",
                _when(k.created_at),
                _when(k.last_used_at),
                _when(k.revoked_at),
            ]
            for k in found
        ],
    )
    return 0


def _revoke_api_key(db: Database, args: argparse.Namespace) -> int:
    info, newly = accounts.revoke_api_key(db, args.id)
    if args.json:
        _print_json({**_key_record(info), "already_revoked": not newly})
    elif newly:
        print(f"API key {info.id} ({info.mask}, {info.user_email}) revoked at {_when(info.revoked_at)}")
    else:
        print(f"API key {info.id} ({info.mask}) was already revoked at {_when(info.revoked_at)}")
    return 0


_HANDLERS: dict[tuple[str, str], Callable[[Database, argparse.Namespace], int]] = {
    ("organizations", "create"): _create_organization,
    ("organizations", "list"): _list_organizations,
    ("environments", "create"): _create_environment,
    ("environments", "list"): _list_environments,
    ("api-keys", "list"): _list_api_keys,
    ("api-keys", "revoke"): _revoke_api_key,
}


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def _record(item: Any) -> dict[str, Any]:
    return {k: _iso(v) for k, v in asdict(item).items()}


def _key_record(info: accounts.KeyInfo) -> dict[str, Any]:
    record = _record(info)
    record["revoked"] = info.revoked_at is not None
    return record


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
