"""Public sharing of insights: configurations, token rotation, share passwords, unlocking and shared reads."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.domain import activity
from server.domain.accounts import environment_info
from server.domain.insights import Insights, InsightView, Lookup, find_insight
from server.domain.masks import check_update_mask
from server.domain.unlocks import UnlockLimiter, UnlockLimits, client_address
from server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.execution.refresh import Computed, Execution, Refresh
from server.execution.staleness import stale_after
from server.principal import EnvironmentInfo, Principal, SharePrincipal
from server.runtime import Blocking
from storage.db import Database
from storage.models import (
    Environment,
    Insight,
    SharePassword,
    ShareSession,
    SharingConfiguration,
    User,
    utcnow,
)

# The type activity entries give a sharing configuration's changes (as the reference).
CONFIG_SCOPE = "SharingConfiguration"
# The display settings a configuration keeps (reference §1.2.2); each is a boolean.
SETTINGS_KEYS = ("detailed", "hideExtraDetails", "legend", "noHeader", "showInspector", "whitelabel")
WRITABLE = ("enabled", "settings", "password_required")
NOTE_LIMIT = 100
MIN_PASSWORD = 8
DEFAULT_GRACE = dt.timedelta(seconds=300)
SESSION_LIFETIME = dt.timedelta(hours=24)
# Work factor of the password hash: scrypt with 16 MiB of memory per hash (about 50 ms here).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32

# Request metadata carrying a sharing credential: the link's raw token, or a share session token.
ACCESS_TOKEN_HEADER = "x-sharing-access-token"
SHARE_TOKEN_HEADER = "x-share-token"


# ------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class PasswordView:
    """A share password as listed (never its hash)."""

    id: int
    created_at: dt.datetime
    note: str
    created_by_email: str
    is_active: bool


@dataclass(frozen=True)
class ConfigView:
    """A sharing configuration as shown to its editors; created_at is None for the unsaved default."""

    created_at: dt.datetime | None
    enabled: bool
    access_token: str
    settings: dict[str, bool] | None
    password_required: bool
    passwords: list[PasswordView]


@dataclass(frozen=True)
class CreatedPassword:
    """A new share password: the plaintext is shown this once."""

    id: int
    password: str
    note: str
    created_at: dt.datetime
    created_by_email: str


@dataclass(frozen=True)
class Unlocked:
    """A share session token and when it stops working."""

    share_token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class SharedRead:
    """What a shared viewer gets: the insight, its answer, and whether extra details are hidden."""

    view: InsightView
    computed: Computed | None
    hide_extra_details: bool


@dataclass(frozen=True)
class ConfigChange:
    """New values for an update; which ones apply is decided by the paths."""

    enabled: bool = False
    settings: dict[str, Any] | None = None
    password_required: bool = False


# ------------------------------------------------------------------------------- pure helpers


def new_access_token() -> str:
    """A public link's token: 22 random bytes, URL-safe (about 30 characters), as the reference."""
    return secrets.token_urlsafe(22)


def hash_password(password: str) -> str:
    """A slow salted hash of a share password, self-describing: scrypt$n$r$p$salt$hash (base64)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=_HASH_BYTES
    )
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash made by hash_password (with the work factor it records)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * int(n) * int(r) * int(p) + 2**20 + 128 * int(r) * 2**10,
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def clean_settings(raw: dict[str, Any], field: str = "sharing_configuration.settings") -> dict[str, bool]:
    """Only the whitelisted keys (others are dropped, as the reference); each must be a boolean."""
    cleaned: dict[str, bool] = {}
    for key in SETTINGS_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, bool):
            raise InvalidArgument(
                f"{field}.{key} must be a boolean (got {value!r})",
                field=f"{field}.{key}",
                reason="INVALID_SETTINGS",
            )
        cleaned[key] = value
    return cleaned


def shared_refresh(
    requested: Refresh,
    last_refresh: dt.datetime | None,
    interval: str | None,
    now: dt.datetime,
) -> Refresh:
    """The refresh mode a shared viewer gets (reference §3.3): viewers cannot force engine load.

    force_blocking is honoured only when the cached result is older than the auto-refresh
    interval, taken as the staleness threshold of the query's interval (§3.4); otherwise it is
    downgraded to blocking. A missing cache entry computes under blocking anyway.
    """
    if requested in (Refresh.ASYNC, Refresh.BLOCKING):
        return requested
    if requested == Refresh.FORCE_BLOCKING:
        if last_refresh is not None and now - last_refresh > stale_after(interval):
            return Refresh.FORCE_BLOCKING
        return Refresh.BLOCKING
    return Refresh.LAZY_ASYNC


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------ domain


class Sharing:
    """The sharing domain. Writes need the caller's key to reach the insight; reads by credential need none."""

    def __init__(
        self,
        db: Database,
        insights: Insights,
        execution: Execution,
        blocking: Blocking,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        grace: dt.timedelta = DEFAULT_GRACE,
        unlock_limits: UnlockLimits | None = None,
    ):
        self.db = db
        self.insights = insights
        self.execution = execution
        self.blocking = blocking
        self.clock = clock
        self.grace = grace
        # The limiter reads the domain's clock at call time, so swapping `clock` moves both.
        self.limiter = UnlockLimiter(db, lambda: self.clock(), unlock_limits)

    # ---------------------------------------------------------------------- configuration

    def get(self, principal: Principal, environment_id: int, insight_id: int) -> ConfigView:
        env = principal.environment(environment_id)
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            config = self._active(session, insight.id)
            if config is None:
                return ConfigView(None, False, new_access_token(), None, False, [])
            return self._view(session, config)

    def update(
        self,
        principal: Principal,
        environment_id: int,
        insight_id: int,
        change: ConfigChange,
        paths: Sequence[str],
    ) -> ConfigView:
        env = principal.environment(environment_id)
        check_update_mask(paths, WRITABLE, "SharingConfiguration")
        chosen = set(paths)
        settings = clean_settings(change.settings or {}) if "settings" in chosen else None
        now = self.clock()
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            config = self._active(session, insight.id) or self._create(session, env, insight, principal, now)
            before = _snapshot(config)
            if "enabled" in chosen:
                config.enabled = change.enabled
            if settings is not None:
                config.settings = settings
            if "password_required" in chosen:
                config.password_required = change.password_required
            after = _snapshot(config)
            changes = activity.diff(before, after, CONFIG_SCOPE)
            if before["enabled"] != after["enabled"]:
                name = "sharing enabled" if config.enabled else "sharing disabled"
                self._log(session, principal, env, insight, name, changes, now)
            elif changes:
                self._log(session, principal, env, insight, "sharing updated", changes, now)
            session.flush()
            return self._view(session, config)

    def refresh_token(self, principal: Principal, environment_id: int, insight_id: int) -> ConfigView:
        """Rotation: the active configurations expire after the grace period; a new one takes over."""
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            actives = list(
                session.scalars(
                    select(SharingConfiguration)
                    .where(
                        SharingConfiguration.insight_id == insight.id,
                        SharingConfiguration.expires_at.is_(None),
                    )
                    .order_by(SharingConfiguration.id.desc())
                )
            )
            current = actives[0] if actives else None
            for config in actives:
                config.expires_at = now + self.grace
            fresh = SharingConfiguration(
                environment_id=env.id,
                insight_id=insight.id,
                created_at=now,
                created_by_id=principal.user_id,
                access_token=new_access_token(),
                enabled=current.enabled if current else False,
                settings=dict(current.settings) if current and current.settings is not None else None,
                password_required=current.password_required if current else False,
            )
            session.add(fresh)
            session.flush()
            if current is not None:
                # The same passwords keep working: copies of their hashes move to the new token.
                for old in self._passwords(session, current.id):
                    session.add(
                        SharePassword(
                            sharing_configuration_id=fresh.id,
                            password_hash=old.password_hash,
                            note=old.note,
                            created_by_id=old.created_by_id,
                            created_at=old.created_at,
                        )
                    )
            self._log(session, principal, env, insight, "access token refreshed", None, now)
            session.flush()
            return self._view(session, fresh)

    # --------------------------------------------------------------------------- passwords

    def create_password(
        self,
        principal: Principal,
        environment_id: int,
        insight_id: int,
        raw_password: str | None,
        note: str,
    ) -> CreatedPassword:
        env = principal.environment(environment_id)
        if len(note) > NOTE_LIMIT:
            raise InvalidArgument(f"note is at most {NOTE_LIMIT} characters (got {len(note)})", field="note")
        if raw_password is not None and raw_password.strip():
            if len(raw_password) < MIN_PASSWORD:
                raise InvalidArgument(
                    f"raw_password: Password must be at least {MIN_PASSWORD} characters long.",
                    field="raw_password",
                    reason="PASSWORD_TOO_SHORT",
                )
            password = raw_password
        else:
            password = secrets.token_urlsafe(16)
        now = self.clock()
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            config = self._active(session, insight.id)
            if config is None or not config.password_required:
                raise FailedPrecondition(
                    "Password protection must be enabled before creating passwords "
                    "(set password_required with UpdateSharingConfiguration)",
                    reason="PASSWORD_PROTECTION_DISABLED",
                )
            row = SharePassword(
                sharing_configuration_id=config.id,
                password_hash=hash_password(password),
                note=note,
                created_by_id=principal.user_id,
                created_at=now,
            )
            session.add(row)
            session.flush()
            self._log(
                session,
                principal,
                env,
                insight,
                "share password created",
                [_change("share_password", None, {"id": row.id, "note": note})],
                now,
            )
            # The caller's user exists: its key was verified for this call, and users are never deleted.
            email = session.scalars(select(User.email).where(User.id == principal.user_id)).one()
            return CreatedPassword(row.id, password, note, now, email)

    def delete_password(
        self, principal: Principal, environment_id: int, insight_id: int, password_id: int
    ) -> ConfigView:
        """Deactivates the password (nothing is deleted); its share sessions stop working."""
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            config = self._active(session, insight.id)
            row = (
                session.scalars(
                    select(SharePassword).where(
                        SharePassword.id == password_id,
                        SharePassword.sharing_configuration_id == config.id,
                        SharePassword.is_active.is_(True),
                    )
                ).first()
                if config is not None
                else None
            )
            if config is None or row is None:
                raise NotFound(
                    f"Password not found: {password_id}",
                    reason="SHARE_PASSWORD_NOT_FOUND",
                    metadata={"password_id": str(password_id)},
                )
            row.is_active = False
            self._log(
                session,
                principal,
                env,
                insight,
                "share password deleted",
                [_change("share_password", {"id": row.id, "note": row.note}, None)],
                now,
            )
            session.flush()
            return self._view(session, config)

    # ---------------------------------------------------------------------- public access

    def unlock(self, access_token: str, password: str, peer: str) -> Unlocked:
        """A share session for the right password; failures are limited per address, then per link."""
        address = client_address(peer)
        # A locked address is refused before anything is looked up, whatever link it names.
        self.limiter.check_address(address)
        now = self.clock()
        with self.db.session() as session:
            config = self._by_token(session, access_token)
            _check_config(config, now)
            assert config is not None
            config_id = config.id
            hashes = [(p.id, p.password_hash) for p in self._passwords(session, config.id)]
        # Only guesses at a live link are counted: unknown, rotated-out or disabled links check no
        # password, so they tell a guesser nothing (and leave no row to store).
        self.limiter.begin(config_id, address)
        # The slow hashes are checked outside any transaction.
        match = next((pid for pid, stored in hashes if verify_password(password, stored)), None)
        if match is None:
            raise Unauthenticated("Incorrect password", reason="INCORRECT_PASSWORD")
        self.limiter.succeeded(config_id, address)
        token = secrets.token_urlsafe(32)
        with self.db.session() as session:
            config = session.get(SharingConfiguration, config_id)
            _check_config(config, now)
            assert config is not None
            expires = now + SESSION_LIFETIME
            if config.expires_at is not None:
                expires = min(expires, config.expires_at)
            session.add(
                ShareSession(
                    token_hash=_sha256(token),
                    sharing_configuration_id=config.id,
                    share_password_id=match,
                    created_at=now,
                    expires_at=expires,
                )
            )
        return Unlocked(token, expires)

    def resolve(self, header: str, token: str) -> SharePrincipal:
        """The viewer a sharing credential stands for, or UNAUTHENTICATED/PERMISSION_DENIED saying why not."""
        now = self.clock()
        with self.db.session() as session:
            if header == SHARE_TOKEN_HEADER:
                share = session.scalars(
                    select(ShareSession).where(ShareSession.token_hash == _sha256(token))
                ).first()
                if share is None or share.expires_at <= now:
                    raise Unauthenticated(
                        "Share token is invalid or has expired: unlock the insight again",
                        reason="SHARE_TOKEN_INVALID",
                    )
                password = session.get(SharePassword, share.share_password_id)
                if password is None or not password.is_active:
                    raise Unauthenticated(
                        "Share token was revoked: its password was removed", reason="SHARE_TOKEN_REVOKED"
                    )
                config = session.get(SharingConfiguration, share.sharing_configuration_id)
                _check_config(config, now)
            else:
                config = self._by_token(session, token)
                _check_config(config, now)
                assert config is not None
                if config.password_required:
                    raise PermissionDenied(
                        "This shared insight is password-protected: unlock it with UnlockSharedInsight "
                        f"and send the share token as '{SHARE_TOKEN_HEADER}' metadata",
                        reason="SHARING_PASSWORD_REQUIRED",
                    )
            assert config is not None
            env = session.get(Environment, config.environment_id)
            assert env is not None
            info = environment_info(env)
            return SharePrincipal(
                environment=info,
                insight_id=config.insight_id,
                configuration_id=config.id,
                settings=dict(config.settings or {}),
            )

    async def read(self, share: SharePrincipal, requested: Refresh) -> SharedRead:
        """The shared insight, read-only, with its result under the remapped refresh mode."""
        env = share.environment
        view = await self.blocking.run(self.insights.get_shared, env, share.insight_id)
        if view.query is not None and view.query.WhichOneof("node") in _PERSON_LISTS:
            # A drill-down lists persons with their properties: a link must not hand those to
            # whoever holds it (the reference's shared views hide the persons modal too).
            raise PermissionDenied(
                "a shared link does not show lists of persons (InsightActorsQuery)", reason="PERSONS_NOT_SHARED"
            )
        entry = await self.execution.cached(env, view.query)
        mode = shared_refresh(
            requested,
            entry.last_refresh if entry else None,
            entry.interval if entry else None,
            self.clock(),
        )
        computed = await self.execution.result(env, view.query, mode, insight_id=view.insight.id)
        return SharedRead(view, computed, bool(share.settings.get("hideExtraDetails")))

    # ----------------------------------------------------------------------------- helpers

    def _insight(self, session: Session, environment_id: int, insight_id: int) -> Insight:
        return find_insight(session, environment_id, Lookup(id=insight_id))

    def _active(self, session: Session, insight_id: int) -> SharingConfiguration | None:
        return session.scalars(
            select(SharingConfiguration)
            .where(SharingConfiguration.insight_id == insight_id, SharingConfiguration.expires_at.is_(None))
            .order_by(SharingConfiguration.id.desc())
        ).first()

    def _by_token(self, session: Session, token: str) -> SharingConfiguration | None:
        if not token:
            return None
        return session.scalars(
            select(SharingConfiguration).where(SharingConfiguration.access_token == token)
        ).first()

    def _create(
        self, session: Session, env: EnvironmentInfo, insight: Insight, principal: Principal, now: dt.datetime
    ) -> SharingConfiguration:
        """The insight's first configuration: the model's defaults (disabled, no settings, no password)."""
        config = SharingConfiguration(
            environment_id=env.id,
            insight_id=insight.id,
            created_at=now,
            created_by_id=principal.user_id,
            access_token=new_access_token(),
        )
        session.add(config)
        session.flush()
        return config

    def _passwords(self, session: Session, config_id: int) -> list[SharePassword]:
        return list(
            session.scalars(
                select(SharePassword)
                .where(SharePassword.sharing_configuration_id == config_id, SharePassword.is_active.is_(True))
                .order_by(SharePassword.id)
            )
        )

    def _view(self, session: Session, config: SharingConfiguration) -> ConfigView:
        passwords = self._passwords(session, config.id)
        creators = {p.created_by_id for p in passwords if p.created_by_id is not None}
        # A password without a recorded creator (a nullable column) lists with an empty email.
        emails: dict[int | None, str] = {
            user_id: email
            for user_id, email in session.execute(select(User.id, User.email).where(User.id.in_(creators)))
        }
        return ConfigView(
            created_at=config.created_at,
            enabled=config.enabled,
            access_token=config.access_token,
            settings=dict(config.settings) if config.settings is not None else None,
            password_required=config.password_required,
            passwords=[
                PasswordView(
                    p.id,
                    p.created_at,
                    p.note,
                    emails.get(p.created_by_id, ""),
                    p.is_active,
                )
                for p in passwords
            ],
        )

    def _log(
        self,
        session: Session,
        principal: Principal,
        env: EnvironmentInfo,
        insight: Insight,
        name: str,
        changes: list[dict[str, Any]] | None,
        now: dt.datetime,
    ) -> None:
        activity.record_insight(session, env, principal.user_id, name, insight, now, changes)


# Query kinds whose result lists persons: never shown through a shared link.
_PERSON_LISTS = frozenset({"insight_actors_query"})


def _check_config(config: SharingConfiguration | None, now: dt.datetime) -> None:
    if config is None:
        raise Unauthenticated("Sharing access token is invalid.", reason="SHARING_TOKEN_INVALID")
    if config.expires_at is not None and config.expires_at <= now:
        raise Unauthenticated(
            "Sharing access token has expired: the link was rotated; use the new link",
            reason="SHARING_TOKEN_EXPIRED",
        )
    if not config.enabled:
        raise PermissionDenied("Sharing is disabled for this insight.", reason="SHARING_DISABLED")


def _snapshot(config: SharingConfiguration) -> dict[str, Any]:
    return {
        "enabled": config.enabled,
        "settings": dict(config.settings) if config.settings is not None else None,
        "password_required": config.password_required,
    }


def _change(field: str, before: Any, after: Any) -> dict[str, Any]:
    return activity.change(CONFIG_SCOPE, field, before, after)
