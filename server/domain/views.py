"""Insight views: marking insights viewed, the caller's last viewed, the environment's trending.

Every view is the one InsightViewed record per (user, insight) that reads (GetInsight) write too,
so `last_viewed_at`, ListInsights' last-viewed filters and ordering, and these lists agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from server.domain.insights import Insights, InsightView
from server.domain.paging import Page
from server.errors import InvalidArgument, Violations
from server.principal import Principal
from storage.models import Insight, InsightViewed

MAX_MARKED = 2500  # the reference's bound on POST /insights/viewed/
# Each lost insert race leaves a row the next pass updates; a few passes outlast any burst.
MARK_ATTEMPTS = 5
LAST_VIEWED = 5
TRENDING_DEFAULT_DAYS, TRENDING_MAX_DAYS = 7, 365
TRENDING_DEFAULT_LIMIT, TRENDING_MAX_LIMIT = 10, 100


@dataclass(frozen=True)
class Marked:
    """Outcome of marking insights viewed: the ids recorded and the ids that are no live insight."""

    viewed: list[int]
    not_found: list[int]


class InsightViews:
    """The view lists and the explicit view marks, over the insight domain's records."""

    def __init__(self, insights: Insights):
        self.insights = insights

    def mark_viewed(self, principal: Principal, environment_id: int, ids: Sequence[int]) -> Marked:
        """Records the caller's view of each live insight of `ids` at now (always written, unlike a
        read's view, which keeps a recent one: an explicit mark is the newest view by definition)."""
        env = principal.environment(environment_id)
        if len(ids) > MAX_MARKED:
            raise InvalidArgument(
                f"insight_ids holds {len(ids)} ids; at most {MAX_MARKED} are accepted", field="insight_ids"
            )
        wanted = sorted(set(ids))
        now = self.insights.clock()
        for attempt in range(MARK_ATTEMPTS):
            try:
                live = self._mark(principal.user_id, env.id, wanted, now)
                break
            except IntegrityError:
                # A concurrent mark or read inserted one of the rows first: the next pass updates it.
                if attempt == MARK_ATTEMPTS - 1:
                    raise
        for insight_id in live:
            self.insights.cache.saw(principal.user_id, insight_id, now)
        return Marked(live, sorted(set(wanted) - set(live)))

    def _mark(self, user_id: int, environment_id: int, ids: list[int], now: dt.datetime) -> list[int]:
        with self.insights.db.session() as session:
            live = sorted(
                session.scalars(
                    select(Insight.id).where(
                        Insight.environment_id == environment_id, Insight.id.in_(ids), Insight.deleted.is_(False)
                    )
                )
            )
            seen = {
                v.insight_id: v
                for v in session.scalars(
                    select(InsightViewed).where(InsightViewed.user_id == user_id, InsightViewed.insight_id.in_(live))
                )
            }
            for insight_id in live:
                if insight_id in seen:
                    seen[insight_id].last_viewed_at = now
                else:
                    session.add(
                        InsightViewed(
                            environment_id=environment_id, user_id=user_id, insight_id=insight_id, last_viewed_at=now
                        )
                    )
        return live

    def last_viewed(self, principal: Principal, environment_id: int) -> list[InsightView]:
        """The caller's most recently viewed live insights of the environment, newest view first."""
        env = principal.environment(environment_id)
        with self.insights.db.session() as session:
            rows = list(
                session.scalars(
                    select(Insight)
                    .join(InsightViewed, InsightViewed.insight_id == Insight.id)
                    .where(
                        InsightViewed.user_id == principal.user_id,
                        Insight.environment_id == env.id,
                        Insight.deleted.is_(False),
                    )
                    .order_by(InsightViewed.last_viewed_at.desc(), Insight.id.desc())
                    .limit(LAST_VIEWED)
                )
            )
            return self.insights.views(session, principal.user_id, env, rows)

    def trending(self, principal: Principal, environment_id: int, days: int, limit: int, offset: int) -> Page[InsightView]:
        """Live insights by how many users viewed them last within `days` days, most first (ties:
        the latest view first, then the newest insight)."""
        env = principal.environment(environment_id)
        violations = Violations()
        if days < 0 or days > TRENDING_MAX_DAYS:
            violations.add("days", f"days must be between 1 and {TRENDING_MAX_DAYS} (0 means {TRENDING_DEFAULT_DAYS})")
        if limit < 0 or limit > TRENDING_MAX_LIMIT:
            violations.add("limit", f"limit must be between 1 and {TRENDING_MAX_LIMIT} (0 means {TRENDING_DEFAULT_LIMIT})")
        if offset < 0:
            violations.add("offset", "offset must not be negative")
        violations.raise_if_any()
        limit = limit or TRENDING_DEFAULT_LIMIT
        since = self.insights.clock() - dt.timedelta(days=days or TRENDING_DEFAULT_DAYS)
        views = func.count(InsightViewed.id).label("views")
        latest = func.max(InsightViewed.last_viewed_at).label("latest")
        counted = (
            select(Insight.id, views, latest)
            .join(InsightViewed, InsightViewed.insight_id == Insight.id)
            .where(
                Insight.environment_id == env.id,
                Insight.deleted.is_(False),
                InsightViewed.last_viewed_at >= since,
            )
            .group_by(Insight.id)
            .subquery()
        )
        with self.insights.db.session() as session:
            count = session.scalar(select(func.count()).select_from(counted)) or 0
            ids = list(
                session.scalars(
                    select(counted.c.id)
                    .order_by(counted.c.views.desc(), counted.c.latest.desc(), counted.c.id.desc())
                    .offset(offset)
                    .limit(limit)
                )
            )
            found = {r.id: r for r in session.scalars(select(Insight).where(Insight.id.in_(ids)))}
            rows = [found[i] for i in ids]
            return Page(self.insights.views(session, principal.user_id, env, rows), count, limit, offset)
