"""Organizations, environments, users and personal API keys: creation and key verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import zoneinfo

from sqlalchemy import select, update

from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.principal import EnvironmentInfo, Principal
from storage.db import Database
from storage.models import Environment, Membership, Organization, PersonalApiKey, User, utcnow

KEY_PREFIX = "phx_"
# Scope strings: "*" or "<object>:<read|write>".
_SCOPE = re.compile(r"^(\*|[a-z_]+:(read|write))$")
# How stale last_used_at may get before a verification writes it again.
_LAST_USED_RESOLUTION = dt.timedelta(hours=1)


def environment_info(env: Environment) -> EnvironmentInfo:
    """What every call needs to know about an environment (test filters as canonical JSON text)."""
    return EnvironmentInfo(
        env.id,
        env.organization_id,
        env.timezone,
        env.week_start_day,
        json.dumps(env.test_account_filters or [], sort_keys=True),
    )


def hash_key(raw_key: str) -> str:
    """The stored form of a key: SHA-256 of a 256-bit random secret needs no slow hash."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def create_organization(db: Database, name: str) -> int:
    with db.session() as session:
        org = Organization(name=name)
        session.add(org)
        session.flush()
        return org.id


def create_environment(
    db: Database, organization_id: int, name: str, timezone: str = "UTC", week_start_day: int = 0
) -> int:
    if timezone not in zoneinfo.available_timezones() and timezone != "UTC":
        raise InvalidArgument(f"unknown time zone {timezone!r}", field="timezone")
    if week_start_day not in (0, 1):
        raise InvalidArgument("week_start_day must be 0 (Sunday) or 1 (Monday)", field="week_start_day")
    with db.session() as session:
        env = Environment(
            organization_id=organization_id, name=name, timezone=timezone, week_start_day=week_start_day
        )
        session.add(env)
        session.flush()
        return env.id


def create_user(db: Database, email: str, first_name: str = "", last_name: str = "") -> int:
    with db.session() as session:
        user = User(email=email, first_name=first_name, last_name=last_name)
        session.add(user)
        session.flush()
        return user.id


def add_membership(db: Database, user_id: int, organization_id: int) -> None:
    with db.session() as session:
        session.add(Membership(user_id=user_id, organization_id=organization_id))


def create_api_key(
    db: Database,
    user_id: int,
    scopes: list[str],
    environment_ids: list[int] | None = None,
    label: str = "",
) -> tuple[int, str]:
    """Creates a key and returns (its id, the raw key). The raw key is never stored or shown again."""
    bad = [s for s in scopes if not _SCOPE.match(s)]
    if not scopes or bad:
        raise InvalidArgument(
            f"invalid scopes {bad or scopes}: use '*' or 'object:read|write'", field="scopes"
        )
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        if session.get(User, user_id) is None:
            raise NotFound(f"user {user_id} does not exist")
        key = PersonalApiKey(
            user_id=user_id,
            label=label[:40],
            secure_value=hash_key(raw),
            mask_value=f"{raw[:8]}...{raw[-4:]}",
            scopes=sorted(set(scopes)),
            scoped_environments=sorted(set(environment_ids)) if environment_ids else None,
        )
        session.add(key)
        session.flush()
        return key.id, raw


def revoke_api_key(db: Database, key_id: int) -> None:
    with db.session() as session:
        session.execute(
            update(PersonalApiKey)
            .where(PersonalApiKey.id == key_id, PersonalApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )


def verify_api_key(db: Database, raw_key: str) -> Principal:
    """The principal of a live key, or UNAUTHENTICATED. Records when the key was last used."""
    if not raw_key.startswith(KEY_PREFIX):
        raise Unauthenticated("Invalid personal API key.", reason="INVALID_API_KEY")
    now = utcnow()
    with db.session() as session:
        key = session.scalars(
            select(PersonalApiKey).where(PersonalApiKey.secure_value == hash_key(raw_key))
        ).first()
        if key is None or key.revoked_at is not None:
            raise Unauthenticated("Invalid personal API key.", reason="INVALID_API_KEY")
        rows = session.execute(
            select(Environment)
            .join(Membership, Membership.organization_id == Environment.organization_id)
            .where(Membership.user_id == key.user_id)
        ).scalars()
        allowed = set(key.scoped_environments) if key.scoped_environments else None
        environments = {env.id: environment_info(env) for env in rows if allowed is None or env.id in allowed}
        if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
            key.last_used_at = now
        return Principal(
            key_id=key.id, user_id=key.user_id, scopes=frozenset(key.scopes), environments=environments
        )


def bootstrap(db: Database) -> tuple[int, int]:
    """The first user and environment, creating a demo organization when none exist."""
    with db.session() as session:
        env = session.scalars(select(Environment).order_by(Environment.id)).first()
        if env is not None:
            user_id = session.scalars(
                select(Membership.user_id).where(Membership.organization_id == env.organization_id)
            ).first()
            if user_id is not None:
                return user_id, env.id
    org_id = create_organization(db, "Demo organization")
    env_id = create_environment(db, org_id, "Demo environment")
    user_id = create_user(db, "demo@example.com", "Demo", "User")
    add_membership(db, user_id, org_id)
    return user_id, env_id
