"""SQLAlchemy ORM models of the metadata database."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC instants; always returns timezone-aware datetimes (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# Integer primary keys that are BIGINT on PostgreSQL and the rowid alias on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every model."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Organization(Base):
    """A company using the service; users are members of organizations."""

    __tablename__ = "organizations"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Environment(Base):
    """A project environment (the reference's team): the tenant insights and events belong to."""

    __tablename__ = "environments"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(400))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # 0 = weeks start on Sunday, 1 = on Monday (as the reference).
    week_start_day: Mapped[int] = mapped_column(Integer, default=0)
    # Property filters (reference JSON) that exclude internal and test users.
    test_account_filters: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who signs in and owns API keys."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(150), default="")
    last_name: Mapped[str] = mapped_column(String(150), default="")
    distinct_id: Mapped[str] = mapped_column(String(200), default=lambda: str(uuid.uuid4()))
    is_email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    role_at_organization: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A user's membership of an organization, which gives access to all its environments."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "organization_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PersonalApiKey(Base):
    """A personal API key: only a hash of the secret is stored."""

    __tablename__ = "personal_api_keys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(40), default="")
    # SHA-256 hex of the whole key; keys are 256-bit random so a fast hash is enough.
    secure_value: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first and last characters, to recognise it in lists.
    mask_value: Mapped[str] = mapped_column(String(20))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # Environment ids the key is limited to; null means every environment of the user.
    scoped_environments: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Insight(Base):
    """A saved query. Never hard-deleted: `deleted` marks a soft delete."""

    __tablename__ = "insights"
    __table_args__ = (
        UniqueConstraint("environment_id", "short_id"),
        Index("ix_insights_env_deleted_modified", "environment_id", "deleted", "last_modified_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    short_id: Mapped[str] = mapped_column(String(12))
    name: Mapped[str | None] = mapped_column(String(400), nullable=True)
    derived_name: Mapped[str | None] = mapped_column(String(400), nullable=True)
    description: Mapped[str | None] = mapped_column(String(400), nullable=True)
    # The QueryNode message, serialised protobuf (lossless and cheap to load).
    query: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The list filter `insight` value derived from the query: TRENDS, FUNNELS, ..., JSON, SQL.
    insight_type: Mapped[str | None] = mapped_column(String(20), nullable=True, index=True)
    order: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    saved: Mapped[bool] = mapped_column(Boolean, default=True)
    favorited: Mapped[bool] = mapped_column(Boolean, default=False)
    is_sample: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_modified_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_modified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class Tag(Base):
    """A tag name of an environment."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("environment_id", "name"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    name: Mapped[str] = mapped_column(String(255))


class TaggedItem(Base):
    """The association of a tag with an insight (removing a tag removes this row only)."""

    __tablename__ = "tagged_items"
    __table_args__ = (UniqueConstraint("tag_id", "insight_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), index=True)
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"), index=True)


class Dashboard(Base):
    """A dashboard; insights sit on it through tiles."""

    __tablename__ = "dashboards"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"), index=True)
    name: Mapped[str] = mapped_column(String(400), default="")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    description: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The serialized insights.v1.DashboardFilter applied to its insights read `from_dashboard`;
    # None when it holds none.
    filters: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # None on rows written before dashboards could change (their created_at stands for it).
    updated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class DashboardTag(Base):
    """The association of a tag (of the environment's tags, shared with insights) with a dashboard."""

    __tablename__ = "dashboard_tags"
    __table_args__ = (UniqueConstraint("tag_id", "dashboard_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), index=True)
    dashboard_id: Mapped[int] = mapped_column(ForeignKey("dashboards.id"), index=True)


class DashboardTile(Base):
    """An insight placed on a dashboard; removing it soft-deletes the tile."""

    __tablename__ = "dashboard_tiles"
    __table_args__ = (UniqueConstraint("dashboard_id", "insight_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dashboard_id: Mapped[int] = mapped_column(ForeignKey("dashboards.id"), index=True)
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"), index=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The tile's place in the dashboard's layout, from 0 (ties, as on rows written before tiles
    # had one, fall back to the tile id).
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The tile's color ("blue"...), its layouts by breakpoint (the caller's JSON object)
    # and its own filters (a serialized DashboardFilter, as Dashboard.filters); None: none.
    color: Mapped[str | None] = mapped_column(String(400), nullable=True)
    layouts: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    filters: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class InsightCreateRequest(Base):
    """A CreateInsight's request_id: a retry carrying it answers the insight it created (AIP-155)."""

    __tablename__ = "insight_create_requests"
    __table_args__ = (UniqueConstraint("environment_id", "request_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    request_id: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the request's insight fields: the same id with other fields is a caller's mistake.
    fingerprint: Mapped[str] = mapped_column(String(64))
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InsightViewed(Base):
    """When a user last viewed an insight."""

    __tablename__ = "insight_views"
    __table_args__ = (UniqueConstraint("user_id", "insight_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"), index=True)
    last_viewed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ActivityLog(Base):
    """One entry of the audit trail; append-only."""

    __tablename__ = "activity_log"
    __table_args__ = (
        Index("ix_activity_env_scope_item", "environment_id", "scope", "item_id", "created_at"),
    )
    # Integer key: orders entries written within the same clock tick.
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # The public id of the entry.
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    was_impersonated: Mapped[bool] = mapped_column(Boolean, default=False)
    activity: Mapped[str] = mapped_column(String(79))
    scope: Mapped[str] = mapped_column(String(79))
    item_id: Mapped[str] = mapped_column(String(72))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SharingConfiguration(Base):
    """How an insight is shared publicly. Rotation expires a row and adds a new one: never deleted."""

    __tablename__ = "sharing_configurations"
    __table_args__ = (Index("ix_sharing_insight_expires", "insight_id", "expires_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The public link's token (URL-safe random); the link is the credential, so it is unique.
    access_token: Mapped[str] = mapped_column(String(400), unique=True)
    # Null: the active configuration. Set by rotation: the token keeps working until then.
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # Whitelisted boolean display settings (detailed, hideExtraDetails, ...); null when never set.
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    password_required: Mapped[bool] = mapped_column(Boolean, default=False)


class SharePassword(Base):
    """A password of a sharing configuration: only a slow salted hash is stored; soft-deleted."""

    __tablename__ = "share_passwords"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sharing_configuration_id: Mapped[int] = mapped_column(ForeignKey("sharing_configurations.id"), index=True)
    # Self-describing: scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>.
    password_hash: Mapped[str] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(String(100), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class ShareSession(Base):
    """A share session opened with a password: only the SHA-256 of its token is stored."""

    __tablename__ = "share_sessions"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sharing_configuration_id: Mapped[int] = mapped_column(ForeignKey("sharing_configurations.id"), index=True)
    share_password_id: Mapped[int] = mapped_column(ForeignKey("share_passwords.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()


class ShareUnlockFailure(Base):
    """A failed (or in-flight) share-password guess, counted per client address and per link.

    Rows live as long as the unlock window says and are then deleted: they are counters, not
    something a user made. A row is kept only for a real link, and attempts past a limit leave no
    row, so the table holds at most (links) x (per-link limit) rows within a window.
    """

    __tablename__ = "share_unlock_failures"
    __table_args__ = (
        Index("ix_share_unlock_failures_client_at", "client", "at"),
        Index("ix_share_unlock_failures_config_at", "sharing_configuration_id", "at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    sharing_configuration_id: Mapped[int] = mapped_column(ForeignKey("sharing_configurations.id"))
    # SHA-256 (hex) of the client address the attempt is limited by (an IPv4 host or an IPv6 /64).
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(index=True)


class Threshold(Base):
    """The bounds an alert checks against (reference JSON InsightThreshold in `configuration`)."""

    __tablename__ = "alert_thresholds"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    # {"type": "absolute"|"percentage", "bounds": {"lower": x, "upper": y}} (reference JSON).
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AlertConfiguration(Base):
    """An alert on an insight. Never hard-deleted: `deleted` hides it from every read and check."""

    __tablename__ = "alert_configurations"
    __table_args__ = (Index("ix_alerts_due", "enabled", "deleted", "next_check_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"), index=True)
    insight_id: Mapped[int] = mapped_column(ForeignKey("insights.id"), index=True)
    threshold_id: Mapped[str] = mapped_column(ForeignKey("alert_thresholds.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    # User ids (members of the organization) notified when it fires.
    subscribed_users: Mapped[list[Any]] = mapped_column(default=list)
    # Reference JSON: {"type": "absolute_value"|"relative_increase"|"relative_decrease"}.
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # "Firing", "Not firing", "Errored" or "Snoozed" (the reference's strings).
    state: Mapped[str] = mapped_column(String(20), default="Not firing")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_notified_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_checked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    next_check_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # Reference JSON discriminated by "type": TrendsAlertConfig {"type", "series_index",
    # "check_ongoing_interval"?} or FunnelsAlertConfig {"type", "metric", "funnel_step"}.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Reference JSON detector or ensemble; null without a detector.
    detector_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # "hourly", "daily", "weekly" or "monthly".
    calculation_interval: Mapped[str] = mapped_column(String(20), default="daily")
    snoozed_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    skip_weekend: Mapped[bool] = mapped_column(Boolean, default=False)
    # Reference JSON: {"blocked_windows": [{"start": "HH:MM", "end": "HH:MM"}]}; null when none.
    schedule_restriction: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    investigation_agent_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    investigation_gates_notifications: Mapped[bool] = mapped_column(Boolean, default=False)
    investigation_inconclusive_action: Mapped[str] = mapped_column(String(40), default="")
    # http(s) URL receiving a JSON POST per firing check; "" for none (migration 0004).
    webhook_url: Mapped[str] = mapped_column(String(2048), default="", server_default="")
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AlertCheck(Base):
    """One evaluation (or snooze/un-snooze) of an alert; removed by retention after 14 days."""

    __tablename__ = "alert_checks"
    __table_args__ = (Index("ix_alert_checks_alert_created", "alert_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    alert_id: Mapped[str] = mapped_column(ForeignKey("alert_configurations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    calculated_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The alert's condition when the check ran (reference JSON).
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20))
    # Which targets were notified (makes a retried delivery idempotent); null before notifying.
    targets_notified: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    anomaly_scores: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    triggered_points: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    triggered_dates: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    interval: Mapped[str | None] = mapped_column(String(20), nullable=True)
    triggered_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    notification_sent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class Action(Base):
    """A saved definition of which events count as one user action. Never hard-deleted: `deleted`
    marks a soft delete, restored by an update."""

    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_env_deleted", "environment_id", "deleted"),
        # Names are unique among an environment's live actions (as the reference): a series of the
        # action is labelled with its name. Deleted actions keep theirs.
        Index(
            "uq_actions_env_live_name",
            "environment_id",
            "name",
            unique=True,
            sqlite_where=text("NOT deleted"),
            postgresql_where=text("NOT deleted"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    name: Mapped[str] = mapped_column(String(400))
    description: Mapped[str] = mapped_column(String(1000), default="")
    # The steps as the reference's JSON (ActionStep objects: event, url, url_matching, ...).
    steps: Mapped[list[Any]] = mapped_column(default=list)
    # Grows by one with each change of the steps: results computed with the action are cached under it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ActionTag(Base):
    """The association of a tag (of the environment's tags, shared with insights) with an action."""

    __tablename__ = "action_tags"
    __table_args__ = (UniqueConstraint("tag_id", "action_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), index=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)


class Cohort(Base):
    """A saved set of persons: criteria evaluated in the event store, or a static list kept there
    (storage/cohort_members.py). Never hard-deleted: `deleted` hides it and queries refuse it."""

    __tablename__ = "cohorts"
    __table_args__ = (Index("ix_cohorts_env_deleted_created", "environment_id", "deleted", "created_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    name: Mapped[str] = mapped_column(String(400))
    description: Mapped[str] = mapped_column(String(1000), default="")
    is_static: Mapped[bool] = mapped_column(Boolean, default=False)
    # The CohortFilters message, serialised protobuf; null for a static cohort.
    filters: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Bumped by every change of the definition or of the static members: results computed with
    # the cohort depend on it (cache keys include it).
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The member count and when it was computed (ListCohortPersons, uploads); null when never.
    count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_calculated_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
