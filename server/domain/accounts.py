"""Organizations, environments, users and personal API keys: creation, listing, revocation and key
verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.principal import EnvironmentInfo, Principal
from storage.db import Database
from storage.models import Environment, Membership, Organization, PersonalApiKey, User, utcnow

KEY_PREFIX = "phx_"
# Scope strings: "*" or "<object>:<read|write>".
_SCOPE = re.compile(r"^(\*|[a-z_]+:(read|write))$")
# How stale last_used_at may get before a verification writes it again.
_LAST_USED_RESOLUTION = dt.timedelta(hours=1)
# Organization and environment names (the columns' size).
_MAX_NAME = 400


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


def _name(name: str, field: str) -> str:
    name = name.strip()
    if not name or len(name) > _MAX_NAME:
        raise InvalidArgument(f"{field} must be 1-{_MAX_NAME} characters", field=field)
    return name


def create_organization(db: Database, name: str) -> int:
    name = _name(name, "name")
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
    name = _name(name, "name")
    with db.session() as session:
        if session.get(Organization, organization_id) is None:
            raise NotFound(f"organization {organization_id} does not exist")
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


def revoke_api_key(db: Database, key_id: int) -> tuple[KeyInfo, bool]:
    """Marks a key revoked (the row stays) and returns it, with whether this call revoked it.

    A running server refuses it once its verification cache (INSIGHTS_AUTH_CACHE_SECONDS) expires.
    """
    with db.session() as session:
        revoked = session.execute(
            update(PersonalApiKey)
            .where(PersonalApiKey.id == key_id, PersonalApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        newly = bool(getattr(revoked, "rowcount", 0))
    found = list_api_keys(db, key_id=key_id)
    if not found:
        raise NotFound(f"API key {key_id} does not exist")
    return found[0], newly


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


# ---------------------------------------------------------------------------
# What operators list (never a key's secret or its hash)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganizationInfo:
    """An organization as an operator lists it."""

    id: int
    name: str
    created_at: dt.datetime
    environments: int
    members: int


@dataclass(frozen=True)
class EnvironmentRow:
    """An environment as an operator lists it."""

    id: int
    organization_id: int
    organization_name: str
    name: str
    timezone: str
    week_start_day: int
    created_at: dt.datetime


@dataclass(frozen=True)
class KeyInfo:
    """An API key as an operator lists it: the mask is the key's first 8 and last 4 characters,
    enough to recognise a leaked key, and nothing the service verifies against."""

    id: int
    label: str
    mask: str
    user_id: int
    user_email: str
    scopes: list[str]
    environments: list[int] | None  # None: every environment of the user's organizations
    created_at: dt.datetime
    last_used_at: dt.datetime | None  # recorded at most once an hour per key
    revoked_at: dt.datetime | None


def list_organizations(db: Database) -> list[OrganizationInfo]:
    with db.session() as session:
        environments = dict(
            session.execute(
                select(Environment.organization_id, func.count()).group_by(Environment.organization_id)
            ).all()
        )
        members = dict(
            session.execute(
                select(Membership.organization_id, func.count()).group_by(Membership.organization_id)
            ).all()
        )
        return [
            OrganizationInfo(org.id, org.name, org.created_at, environments.get(org.id, 0), members.get(org.id, 0))
            for org in session.scalars(select(Organization).order_by(Organization.id))
        ]


def list_environments(db: Database, organization_id: int | None = None) -> list[EnvironmentRow]:
    with db.session() as session:
        query = (
            select(Environment, Organization.name)
            .join(Organization, Organization.id == Environment.organization_id)
            .order_by(Environment.id)
        )
        if organization_id is not None:
            if session.get(Organization, organization_id) is None:
                raise NotFound(f"organization {organization_id} does not exist")
            query = query.where(Environment.organization_id == organization_id)
        return [
            EnvironmentRow(
                env.id, env.organization_id, org_name, env.name, env.timezone, env.week_start_day, env.created_at
            )
            for env, org_name in session.execute(query).all()
        ]


def list_api_keys(
    db: Database,
    *,
    key_id: int | None = None,
    user_id: int | None = None,
    organization_id: int | None = None,
    active_only: bool = False,
) -> list[KeyInfo]:
    """Keys by id, optionally of one user or of the members of one organization."""
    with db.session() as session:
        query = (
            select(PersonalApiKey, User.email)
            .join(User, User.id == PersonalApiKey.user_id)
            .order_by(PersonalApiKey.id)
        )
        if key_id is not None:
            query = query.where(PersonalApiKey.id == key_id)
        if user_id is not None:
            if session.get(User, user_id) is None:
                raise NotFound(f"user {user_id} does not exist")
            query = query.where(PersonalApiKey.user_id == user_id)
        if organization_id is not None:
            if session.get(Organization, organization_id) is None:
                raise NotFound(f"organization {organization_id} does not exist")
            members = select(Membership.user_id).where(Membership.organization_id == organization_id)
            query = query.where(PersonalApiKey.user_id.in_(members))
        if active_only:
            query = query.where(PersonalApiKey.revoked_at.is_(None))
        return [
            KeyInfo(
                key.id,
                key.label,
                key.mask_value,
                key.user_id,
                email,
                list(key.scopes),
                list(key.scoped_environments) if key.scoped_environments else None,
                key.created_at,
                key.last_used_at,
                key.revoked_at,
            )
            for key, email in session.execute(query).all()
        ]


# ---------------------------------------------------------------------------
# Whose key an operator creates
# ---------------------------------------------------------------------------


def key_owner(
    db: Database,
    *,
    user_id: int | None = None,
    email: str | None = None,
    organization_id: int | None = None,
    environment_ids: list[int] | None = None,
) -> int:
    """The user a new key belongs to.

    `user_id`: that user, who must already be a member of the organization and environments named.
    `email`: that user, created when unknown and made a member of the organization named (or of
    the environments' one organization). Neither: the organization's (or the environments') first
    member. Nothing named: the first environment's member, bootstrapping a demo organization.
    """
    if user_id is not None and email:
        raise InvalidArgument("give a user id or an email, not both", field="user")
    if user_id is None and not email and organization_id is None and not environment_ids:
        return bootstrap(db)[0]
    with db.session() as session:
        env_orgs: dict[int, int] = {}
        for env_id in environment_ids or []:
            env = session.get(Environment, env_id)
            if env is None:
                raise NotFound(f"environment {env_id} does not exist")
            env_orgs[env_id] = env.organization_id
        if organization_id is not None:
            if session.get(Organization, organization_id) is None:
                raise NotFound(f"organization {organization_id} does not exist")
            outside = [e for e, org in env_orgs.items() if org != organization_id]
            if outside:
                raise InvalidArgument(
                    f"environment {outside[0]} is not in organization {organization_id}", field="environment"
                )
        target = organization_id
        if target is None and len(set(env_orgs.values())) == 1:
            target = next(iter(env_orgs.values()))
        user: User | None
        if email and (len(email) > 254 or "@" not in email.strip("@")):
            raise InvalidArgument(f"not an email address: {email[:254]!r}", field="email")
        if email:
            user = session.scalars(select(User).where(User.email == email)).first()
            if user is None:
                if target is None:
                    raise InvalidArgument(
                        f"user {email} does not exist: name an organization to create them in",
                        field="organization",
                    )
                user = User(email=email)
                session.add(user)
                session.flush()
            if target is not None and not _member(session, user.id, target):
                session.add(Membership(user_id=user.id, organization_id=target))
                session.flush()
        elif user_id is not None:
            user = session.get(User, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist")
        else:
            first = None
            if target is not None:
                first = session.scalars(
                    select(Membership.user_id)
                    .where(Membership.organization_id == target)
                    .order_by(Membership.id)
                ).first()
            if target is None or first is None:
                what = f"organization {target}" if target is not None else "the environments' organizations"
                raise InvalidArgument(
                    f"{what} has no single member to own the key: give --user or --email", field="user"
                )
            return int(first)
        for org in sorted({*env_orgs.values(), *([organization_id] if organization_id else [])}):
            if not _member(session, user.id, org):
                raise InvalidArgument(f"user {user.id} is not a member of organization {org}", field="user")
        return int(user.id)


def _member(session: Any, user_id: int, organization_id: int) -> bool:
    found = session.scalars(
        select(Membership.id).where(
            Membership.user_id == user_id, Membership.organization_id == organization_id
        )
    ).first()
    return found is not None


def first_environment(db: Database, user_id: int, environment_ids: list[int] | None) -> int | None:
    """The environment a new key's example call uses: the first it is limited to, else the first
    of the user's organizations."""
    if environment_ids:
        return environment_ids[0]
    with db.session() as session:
        found = session.scalars(
            select(Environment.id)
            .join(Membership, Membership.organization_id == Environment.organization_id)
            .where(Membership.user_id == user_id)
            .order_by(Environment.id)
        ).first()
        return int(found) if found is not None else None
